// Certificates for a cluster (`prevail certs`, docs/operations.md): creating a CA, member and
// client certificates (create.ts, which loads @peculiar/x509 on first use), and reading and
// writing their files (files.ts, Node's crypto only: what the cluster transport and the HTTP
// API use).
export {
  CA_DAYS,
  clientLeaf,
  createCa,
  createClientCert,
  createNodeCert,
  DEFAULT_HOSTS,
  LEAF_DAYS,
  nodeLeaf,
  revoke,
  type CaOptions,
  type CertAndKey,
  type ClientCertOptions,
  type Leaf,
  type NodeCertOptions,
} from './create.js';
export {
  crlBlocks,
  describeCrl,
  describeCrls,
  readCrl,
  type CrlDescription,
  type RevokedCert,
} from './crl.js';
export {
  certFilesExist,
  certPaths,
  crlPath,
  writeCrlFile,
  describeCert,
  loadTlsFiles,
  readPem,
  writeCertFiles,
  type CertDescription,
  type TlsFiles,
} from './files.js';

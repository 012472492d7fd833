// The app's HTTP plumbing: the error a handler throws to answer with a message page, the
// responses handlers return (a page or a redirect), writing them with the app's security
// headers, and reading form bodies.
import * as views from './views.mjs';

export const BODY_LIMIT = 64 * 1024;

export class HttpError extends Error {
  constructor(status, heading, text, { headers = {}, links } = {}) {
    super(text);
    this.status = status;
    this.heading = heading;
    this.headers = headers;
    this.links = links;
  }
}

// ---- responses: what a handler returns ---------------------------------------------

export const page = (title, body, status = 200) => ({ status, title, body });
export const redirect = (location) => ({ status: 303, location });

/** Writes a handler's response; `footer()` renders the footer of a page. */
export function send(res, r, footer, extraHeaders = {}) {
  const headers = {
    'content-security-policy':
      "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    // Closure links are capabilities: don't leak them to other sites through Referer.
    'referrer-policy': 'no-referrer',
    'x-content-type-options': 'nosniff',
    ...extraHeaders,
    ...r.headers,
  };
  if (r.location) {
    res.writeHead(r.status, { ...headers, location: r.location, 'content-length': 0 }).end();
    return;
  }
  const body = views.layout({ title: r.title, body: r.body, footer: footer() });
  res.writeHead(r.status, {
    ...headers,
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

/** Answers a failed request with a message page; anything but an HttpError is a logged 500. */
export function sendError(res, req, err, footer) {
  if (!(err instanceof HttpError)) {
    console.error(`${req.method} ${req.url}:`, err);
    err = new HttpError(
      500,
      'Something went wrong',
      'The server failed on this request; the error is in its log.',
    );
  }
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const close = err.status === 413 || err.status === 415 ? { connection: 'close' } : {};
  send(
    res,
    page(
      err.heading,
      views.messagePage({ heading: err.heading, text: err.message, links: err.links }),
      err.status,
    ),
    footer,
    { ...err.headers, ...close },
  );
}

// ---- requests ----------------------------------------------------------------------

/** Reads an urlencoded form body of at most BODY_LIMIT bytes. */
export function readForm(req) {
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  const refuse = (err) => {
    req.resume(); // discard the rest; the connection is closed after the answer
    return Promise.reject(err);
  };
  if (type !== 'application/x-www-form-urlencoded') {
    return refuse(
      new HttpError(415, 'Unsupported form', 'Send forms as application/x-www-form-urlencoded.'),
    );
  }
  const tooLarge = new HttpError(
    413,
    'Too large',
    `Forms are limited to ${BODY_LIMIT / 1024} KiB. Nothing was saved.`,
  );
  if (Number(req.headers['content-length'] ?? 0) > BODY_LIMIT) return refuse(tooLarge);
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    const onData = (chunk) => {
      size += chunk.length;
      if (size <= BODY_LIMIT) {
        chunks.push(chunk);
        return;
      }
      req.off('data', onData).off('end', onEnd);
      req.resume();
      reject(tooLarge);
    };
    const onEnd = () => resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
    req.on('data', onData).on('end', onEnd).once('error', reject);
  });
}

/** The named fields of a form ('' for a missing one). */
export function pick(form, fields) {
  const out = {};
  for (const f of fields) out[f] = form.get(f) ?? '';
  return out;
}

export function safeDecode(s) {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new HttpError(400, 'Bad request', 'That address is not valid.');
  }
}

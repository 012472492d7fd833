// The command lines' (prevail, prevail inspect) one error for bad usage: they print it with a
// pointer to --help and exit 2.

/** The command line was used wrongly (a missing or malformed argument), not a failure of the node. */
export class UsageError extends Error {}

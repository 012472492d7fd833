#!/usr/bin/env bash
# Fetch the Raft engine (raft 0.22.1, the cowsql fork of canonical/raft) as Debian's
# source package, verify it against the checksums in its .dsc, and unpack it into
# third_party/raft (git-ignored). The addon build (binding.gyp) compiles it from there.
#
# Offline builds: RAFT_TARBALL=/path/to/raft_0.22.1.orig.tar.gz skips apt entirely;
# the tarball is still checked against the pinned SHA-256 below.
#
# The mirror is read from this machine's apt configuration; no host is named here.
set -euo pipefail

RAFT_VERSION=0.22.1
RAFT_SUITE=${RAFT_SUITE:-trixie}
# SHA-256 of raft_0.22.1.orig.tar.gz as listed in Debian's raft_0.22.1-1.dsc.
RAFT_ORIG_SHA256=7e45b6f24f3671c9bfd5b146814493f87cb2e560712bd469c1f5969a4b94291a

root=$(cd "$(dirname "$0")/.." && pwd)
third=$root/third_party
dest=$third/raft
cache=$third/cache
# The stamp names the version and our patch level, so a checkout with an older unpack re-unpacks.
stamp=$dest/.prevail-engine-$RAFT_VERSION-p8

if [[ -f $stamp && -z ${RAFT_FORCE:-} ]]; then
  echo "engine: raft $RAFT_VERSION already unpacked in $dest"
  exit 0
fi
mkdir -p "$cache"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# Print the first Debian mirror URI named in the machine's apt sources (deb822 or
# one-line format), skipping security mirrors.
apt_mirror() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' "$f" | grep -v -- '-security' | head -n1 || true)
    [[ -n $uri ]] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' "$f" | grep -v -- '-security' | head -n1 || true)
    [[ -n $uri ]] && { echo "$uri"; return; }
  done
  return 1
}

tarball=${RAFT_TARBALL:-}
if [[ -z $tarball ]]; then
  command -v apt-get >/dev/null || { echo "engine: apt-get not found; set RAFT_TARBALL to an already-downloaded raft_${RAFT_VERSION}.orig.tar.gz" >&2; exit 1; }
  mirror=$(apt_mirror) || { echo "engine: no Debian mirror found in /etc/apt; set RAFT_TARBALL" >&2; exit 1; }
  # A private apt state directory: the machine's own sources and lists stay untouched.
  apt_dir=$cache/apt
  mkdir -p "$apt_dir/sources.d" "$apt_dir/lists/partial" "$apt_dir/archives/partial"
  cat > "$apt_dir/sources.d/raft-src.sources" <<SRC
Types: deb-src
URIs: $mirror
Suites: $RAFT_SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/none.list" -o "Dir::Etc::SourceParts=$apt_dir/sources.d"
            -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir"
            -o "APT::Sandbox::User=root" -o "Debug::NoLocking=1")
  touch "$apt_dir/none.list"
  echo "engine: fetching raft $RAFT_VERSION source from $RAFT_SUITE (deb-src, $mirror)"
  apt-get "${apt_opts[@]}" -qq update
  (cd "$cache" && apt-get "${apt_opts[@]}" -qq source --download-only raft)
  dsc=$(ls "$cache"/raft_"$RAFT_VERSION"-*.dsc | sort | tail -n1)
  # Verify every file the .dsc lists against its Checksums-Sha256 section.
  awk '/^Checksums-Sha256:/ { on = 1; next } /^[^ ]/ { on = 0 } on && NF == 3 { print $1, $3 }' "$dsc" |
    while read -r sum file; do
      got=$(sha256_of "$cache/$file")
      [[ $got == "$sum" ]] || { echo "engine: checksum mismatch for $file ($got != $sum)" >&2; exit 1; }
      echo "engine: sha256 ok  $file"
    done
  tarball=$cache/raft_${RAFT_VERSION}.orig.tar.gz
fi

[[ -f $tarball ]] || { echo "engine: tarball not found: $tarball" >&2; exit 1; }
got=$(sha256_of "$tarball")
[[ $got == "$RAFT_ORIG_SHA256" ]] || { echo "engine: $tarball has sha256 $got, expected $RAFT_ORIG_SHA256" >&2; exit 1; }

rm -rf "$dest" "$dest.tmp"
mkdir -p "$dest.tmp"
tar -xzf "$tarball" -C "$dest.tmp" --strip-components=1
# configure would generate include/raft.h; we build without autotools, so do the one
# substitution it makes (the legacy v0 API, which the addon uses, stays enabled).
# Its ABI static asserts take sizeof of anonymous structs, which C++ rejects: they stay
# in force for the engine's own C compilation and are skipped when the addon includes it.
sed 's/@enable_v0@/yes/' "$dest.tmp/include/raft.h.in" |
  perl -0pe 's/#if defined\(RAFT__LEGACY_no\)\n(#define RAFT__ASSERT_COMPATIBILITY)/#if defined(RAFT__LEGACY_no) || defined(__cplusplus)\n$1/' \
  > "$dest.tmp/include/raft.h"
grep -q 'defined(RAFT__LEGACY_no) || defined(__cplusplus)' "$dest.tmp/include/raft.h" ||
  { echo "engine: could not adapt include/raft.h for C++" >&2; exit 1; }
# p1, a one-token fix of our own (found by npm run verify; docs/internals.md): a follower
# records a configuration entry that arrives inside a batch at the batch's first index
# instead of its own (replicationAppend in src/replication.c; the leader's path in client.c
# uses index + i). The uncommitted change is then never cleared, and once that node leads it
# refuses every membership change (RAFT_CANTCHANGE) until it restarts.
perl -0pi -e 's/(if \(entry->type == RAFT_CHANGE\) \{\n\s+rv = membershipUncommittedChange\(r, index)(, entry\);)/$1 + i$2/' \
  "$dest.tmp/src/replication.c"
grep -q 'membershipUncommittedChange(r, index + i, entry);' "$dest.tmp/src/replication.c" ||
  { echo "engine: could not apply the replication.c fix (p1)" >&2; exit 1; }
# Replaces the one occurrence of the literal text $2 in file $1 with $3; fails if $2 does not
# occur exactly once (the source is not the one the patch was written for).
replace_once() {
  OLD=$2 NEW=$3 perl -0777 -i -pe 'BEGIN { $o = $ENV{OLD}; $n = $ENV{NEW} }
    my $c = () = /\Q$o\E/g; die "found $c times\n" unless $c == 1; s/\Q$o\E/$n/' "$1"
}

# p2 (found restarting followers under writes with small snapshot intervals; docs/engine-patches.md):
# replicationAppend (src/replication.c) set a follower's commit index to min(leaderCommit,
# prevLogIndex + n) whenever leaderCommit was higher, so an AppendEntries anchored below the
# commit index (a repeated probe, a heartbeat at the leader's snapshot index) moved it back.
# Entries past it were applied already: the next apply or snapshot asserted
# last_applied <= commit_index (legacy.c) and the process aborted. It now only moves forward.
replace_once "$dest.tmp/src/replication.c" \
'        raft_index last_new_entry = args->prev_log_index + args->n_entries;
        r->commit_index = min(args->leader_commit, last_new_entry);
        r->update->flags |= RAFT_UPDATE_COMMIT_INDEX;
' \
'        raft_index last_new_entry = args->prev_log_index + args->n_entries;
        raft_index commit_index = min(args->leader_commit, last_new_entry);
        /* prevail p2: the commit index never goes back (an AppendEntries may be
         * anchored below it: a repeated probe, a heartbeat at the leader'"'"'s
         * snapshot index). */
        if (commit_index > r->commit_index) {
            r->commit_index = commit_index;
            r->update->flags |= RAFT_UPDATE_COMMIT_INDEX;
        }
' || { echo "engine: could not apply the replication.c fix (p2)" >&2; exit 1; }

# p3 (same hunt; docs/engine-patches.md): an InstallSnapshot that arrives while the node writes a
# snapshot of its own is held until the write completes (legacyHandleUpdateSnapshot, src/legacy.c),
# but the core has already moved its log to the installed snapshot. takeSnapshotCb then reported
# the older snapshot to the core (TrailSnapshot asserts: the entry is no longer in its log), and
# read the held request after clearing the pointer to it (a NULL dereference). Now the finished
# snapshot is dropped in favour of the held install, which starts; on close the held request is
# freed; and nothing is applied from the old log while an install is in progress.
replace_once "$dest.tmp/src/legacy.c" \
'            persist = r->legacy.snapshot_pending;
            legacyCancelPersistSnapshot(persist);
        }
' \
'            persist = r->legacy.snapshot_pending;
            legacyCancelPersistSnapshot(persist);
            r->legacy.snapshot_pending = NULL; /* prevail p3 */
            raft_free(persist);
        }
' || { echo "engine: could not apply the legacy.c fix (p3, cancel)" >&2; exit 1; }
replace_once "$dest.tmp/src/legacy.c" \
'    logSnapshot(r->legacy.log, metadata.index, r->legacy.snapshot_trailing);

    event.type = RAFT_SNAPSHOT;
    memset(&event.reserved, 0, sizeof event.reserved);
    event.snapshot.metadata = metadata;
    event.snapshot.trailing = r->legacy.snapshot_trailing;
    LegacyForwardToRaftIo(r, &event);

    if (r->legacy.snapshot_pending != NULL) {
        struct legacyPersistSnapshot *persist;
        int rv;
        r->legacy.snapshot_pending = NULL;
        persist = r->legacy.snapshot_pending;
        rv = legacyPersistSnapshotStart(persist);
        assert(rv == 0);
    }
}
' \
'    /* prevail p3: an InstallSnapshot arrived while this snapshot was being
     * written, and was held (legacyHandleUpdateSnapshot). The core has already
     * moved its log to that snapshot, which is more recent than this one:
     * reporting this one would trip TrailSnapshot. Start the held install. */
    if (r->legacy.snapshot_pending != NULL) {
        struct legacyPersistSnapshot *persist = r->legacy.snapshot_pending;
        int rv;
        r->legacy.snapshot_pending = NULL;
        configurationClose(&metadata.configuration);
        rv = legacyPersistSnapshotStart(persist);
        assert(rv == 0);
        (void)rv;
        return;
    }

    logSnapshot(r->legacy.log, metadata.index, r->legacy.snapshot_trailing);

    event.type = RAFT_SNAPSHOT;
    memset(&event.reserved, 0, sizeof event.reserved);
    event.snapshot.metadata = metadata;
    event.snapshot.trailing = r->legacy.snapshot_trailing;
    LegacyForwardToRaftIo(r, &event);
}
' || { echo "engine: could not apply the legacy.c fix (p3, held install)" >&2; exit 1; }
replace_once "$dest.tmp/src/legacy.c" \
'        r->last_applied = commit_index;
    }

    rv = legacyApply(r, events, n_events);
' \
'        r->last_applied = commit_index;
    }

    /* prevail p3: while a snapshot is being installed, the entries in our log
     * are about to be replaced by it; apply none of them. */
    if (r->legacy.snapshot_install) {
        return 0;
    }

    rv = legacyApply(r, events, n_events);
' || { echo "engine: could not apply the legacy.c fix (p3, apply)" >&2; exit 1; }
# p4–p6 (issue 13; docs/engine-patches.md): a peer's bytes reached assertions, unbounded reads
# and a NULL/garbage free. Whatever a correct peer never sends is now refused with a line on
# stderr, and the connection it came on is closed; nothing a correct peer sends changes.
# p4, the handshake (src/uv_tcp_listen.c): server id 0, an address length of 0 or above
# UV__TCP_MAX_ADDRESS_LEN, an address without its NUL.
replace_once "$dest.tmp/src/uv_tcp_listen.c" \
'#include <string.h>
' \
'#include <stdio.h>
#include <string.h>
' || { echo "engine: could not apply the handshake fix (p4, include)" >&2; exit 1; }
replace_once "$dest.tmp/src/uv_tcp_listen.c" \
'    h->address.len = (size_t)byteFlip64(h->preamble[2]);
    h->address.base = RaftHeapMalloc(h->address.len);
' \
'    /* prevail p4: the id and the address length come from the wire. An id of
     * 0 trips the core'"'"'s assertions; the length sizes an allocation (a
     * correct peer sends its address with its NUL, padded to 8 bytes). */
    if (byteFlip64(h->preamble[1]) == 0) {
        fprintf(stderr, "raft: handshake refused: server id 0\n");
        return RAFT_MALFORMED;
    }
    h->address.len = (size_t)byteFlip64(h->preamble[2]);
    if (h->address.len == 0 || h->address.len > UV__TCP_MAX_ADDRESS_LEN) {
        fprintf(stderr, "raft: handshake refused: address length %zu\n",
                h->address.len);
        return RAFT_MALFORMED;
    }
    h->address.base = RaftHeapMalloc(h->address.len);
' || { echo "engine: could not apply the handshake fix (p4, preamble)" >&2; exit 1; }
replace_once "$dest.tmp/src/uv_tcp_listen.c" \
'static int uvTcpDecodePreamble(struct uvTcpHandshake *h)
' \
'/* prevail p4: longer than any host:port (a DNS name has at most 253 bytes). */
#define UV__TCP_MAX_ADDRESS_LEN 1024

static int uvTcpDecodePreamble(struct uvTcpHandshake *h)
' || { echo "engine: could not apply the handshake fix (p4, limit)" >&2; exit 1; }
replace_once "$dest.tmp/src/uv_tcp_listen.c" \
'    id = byteFlip64(incoming->handshake.preamble[1]);
    address = incoming->handshake.address.base;
' \
'    /* prevail p4: the address is used as a C string: it must hold its NUL. */
    if (memchr(incoming->handshake.address.base, 0,
               incoming->handshake.address.len) == NULL) {
        fprintf(stderr, "raft: handshake refused: address without a NUL\n");
        uvTcpIncomingAbort(incoming);
        return;
    }
    id = byteFlip64(incoming->handshake.preamble[1]);
    address = incoming->handshake.address.base;
' || { echo "engine: could not apply the handshake fix (p4, address)" >&2; exit 1; }

# p5, message framing and decoding (src/uv_recv.c, src/uv_encoding.c, src/configuration.c):
# headers shorter than their fields, a header length above UV__MAX_HEADER_LEN, an entry count
# or a configuration length beyond the header, entries that point past the payload, entries
# without a payload, a configuration that does not decode (length 0, server id 0, fields past
# its end), and a double free when one fails half-way.
replace_once "$dest.tmp/src/uv_encoding.c" \
'int uvDecodeMessage(uint8_t type,
' \
'/* prevail p5: how many bytes the decoder of a message of this type reads from
 * a header of this length at this version, before the variable parts (the
 * entry descriptors and the configuration, checked where they are read). */
static size_t uvDecodedHeaderSize(uint8_t type, uint8_t version, size_t len)
{
    switch (type) {
        case RAFT_REQUEST_VOTE:
            /* decodeRequestVote reads the flags at every version. */
            return sizeofRequestVote();
        case RAFT_REQUEST_VOTE_RESULT:
            if (version == 0 && len == sizeofRequestVoteResultV1()) {
                return len;
            }
            return version == 1 ? sizeofRequestVoteResultV1()
                                : sizeofRequestVoteResult();
        case RAFT_APPEND_ENTRIES:
            return 4 * sizeof(uint64_t) + sizeof(uint64_t) /* entry count */;
        case RAFT_APPEND_ENTRIES_RESULT:
            if (version == 0) {
                return sizeofAppendEntriesResultV0();
            }
            return sizeofAppendEntriesResultV0() +
                   (version >= 2 ? 2 : 1) * sizeof(uint16_t);
        case RAFT_INSTALL_SNAPSHOT:
            return 5 * sizeof(uint64_t) /* up to the configuration length */;
        case RAFT_TIMEOUT_NOW:
            return sizeofTimeoutNow();
        default:
            return 0;
    }
}

int uvDecodeMessage(uint8_t type,
' || { echo "engine: could not apply the decoding fix (p5, sizes)" >&2; exit 1; }
replace_once "$dest.tmp/src/uv_encoding.c" \
'    *payload_len = 0;

    /* Decode the header. */
' \
'    *payload_len = 0;

    /* prevail p5: the fields are read at fixed offsets: a shorter header would
     * be read past its end. */
    if (header->len < uvDecodedHeaderSize(type, version, header->len)) {
        return RAFT_MALFORMED;
    }

    /* Decode the header. */
' || { echo "engine: could not apply the decoding fix (p5, header)" >&2; exit 1; }
replace_once "$dest.tmp/src/uv_encoding.c" \
'            rv = decodeAppendEntries(version, header, &message->append_entries);
' \
'            rv = decodeAppendEntries(version, header, &message->append_entries);
            /* prevail p5: on failure the entries are freed, but not their
             * count (an entry of unknown type). */
            if (rv != 0) {
                break;
            }
' || { echo "engine: could not apply the decoding fix (p5, failed entries)" >&2; exit 1; }
replace_once "$dest.tmp/src/uv_encoding.c" \
'    args->leader_commit = byteGet64(&cursor);

    rv = uvDecodeBatchHeader(cursor, &args->entries, &args->n_entries);
' \
'    args->leader_commit = byteGet64(&cursor);

    /* prevail p5: the entry count sizes an allocation and a loop over 16-byte
     * entry descriptors: they must all be in the header. */
    {
        const uint8_t *count = cursor;
        size_t room = buf->len - 5 * sizeof(uint64_t);
        if (byteGet64(&count) > room / (2 * sizeof(uint64_t))) {
            return RAFT_MALFORMED;
        }
    }

    rv = uvDecodeBatchHeader(cursor, &args->entries, &args->n_entries);
' || { echo "engine: could not apply the decoding fix (p5, entry count)" >&2; exit 1; }
replace_once "$dest.tmp/src/uv_encoding.c" \
'    conf.len = (size_t)byteGet64(&cursor);
    conf.base = (void *)cursor;
' \
'    conf.len = (size_t)byteGet64(&cursor);
    conf.base = (void *)cursor;

    /* prevail p5: the configuration and the data length after it must be in
     * the header. */
    if (buf->len < 6 * sizeof(uint64_t) ||
        conf.len > buf->len - 6 * sizeof(uint64_t)) {
        return RAFT_MALFORMED;
    }
' || { echo "engine: could not apply the decoding fix (p5, configuration length)" >&2; exit 1; }
replace_once "$dest.tmp/src/configuration.c" \
'    /* TODO: use '"'"'if'"'"' instead of assert for checking buffer boundaries */
    assert(buf->len > 0);

    configurationInit(c);
' \
'    configurationInit(c);

    /* prevail p5: a configuration may come from the wire: check its bounds
     * instead of asserting (the format byte and the server count first). */
    if (buf->len < 1 + sizeof(uint64_t)) {
        rv = RAFT_MALFORMED;
        goto err;
    }
' || { echo "engine: could not apply the configuration fix (p5, length)" >&2; exit 1; }
replace_once "$dest.tmp/src/configuration.c" \
'        /* Server ID. */
        id = byteGet64(&cursor);
' \
'        /* prevail p5: an id, at least the NUL of an address, and a role. */
        if (buf->len - (size_t)((uint8_t *)cursor - (uint8_t *)buf->base) <
            sizeof(uint64_t) + 2) {
            rv = RAFT_MALFORMED;
            goto err;
        }

        /* Server ID. */
        id = byteGet64(&cursor);
        if (id == 0) {
            rv = RAFT_MALFORMED;
            goto err;
        }
' || { echo "engine: could not apply the configuration fix (p5, server)" >&2; exit 1; }
replace_once "$dest.tmp/src/configuration.c" \
'        /* Role code. */
        role = byteGet8(&cursor);
' \
'        /* Role code. */
        if ((size_t)((uint8_t *)cursor - (uint8_t *)buf->base) >= buf->len) {
            rv = RAFT_MALFORMED;
            goto err;
        }
        role = byteGet8(&cursor);
' || { echo "engine: could not apply the configuration fix (p5, role)" >&2; exit 1; }
replace_once "$dest.tmp/src/configuration.c" \
'    assert(rv == RAFT_MALFORMED || rv == RAFT_NOMEM);
    configurationClose(c);
    return rv;
' \
'    assert(rv == RAFT_MALFORMED || rv == RAFT_NOMEM);
    configurationClose(c);
    /* prevail p5: callers close the configuration again (uvServerDestroy). */
    configurationInit(c);
    return rv;
' || { echo "engine: could not apply the configuration fix (p5, close)" >&2; exit 1; }
replace_once "$dest.tmp/src/uv_recv.c" \
'#include <string.h>
' \
'#include <stdio.h>
#include <string.h>
' || { echo "engine: could not apply the receive fix (p5, include)" >&2; exit 1; }
replace_once "$dest.tmp/src/uv_recv.c" \
'/* Invoked to initialize the read buffer for the next asynchronous read on the
' \
'/* prevail p5: the header length sizes an allocation. 64 MiB is room for four
 * million entry descriptors, far more than a leader puts in one message. */
#define UV__MAX_HEADER_LEN (64u << 20)

/* prevail p5: logs why a message from this server is dropped with its
 * connection. */
static void uvServerRefuse(const struct uvServer *s, const char *reason)
{
    fprintf(stderr,
            "raft: message from server %llu (%s) refused: %s; connection "
            "closed\n",
            (unsigned long long)s->id, s->address, reason);
}

/* prevail p5: whether entries of these lengths, each but the last padded to 8
 * bytes as uvDecodeEntriesBatch reads them, fit in a payload of this length. */
static bool uvEntriesFit(const struct raft_entry *entries,
                         unsigned n,
                         size_t len)
{
    size_t used = 0;
    unsigned i;
    for (i = 0; i < n; i++) {
        size_t entry_len = entries[i].buf.len;
        if (i + 1 < n) {
            entry_len = bytePad64(entry_len);
        }
        if (entry_len > len - used) {
            return false;
        }
        used += entry_len;
    }
    return true;
}

/* Invoked to initialize the read buffer for the next asynchronous read on the
' || { echo "engine: could not apply the receive fix (p5, helpers)" >&2; exit 1; }
replace_once "$dest.tmp/src/uv_recv.c" \
'            if (s->header.len == 0) {
                Tracef(s->uv->tracer, "message has zero length");
                goto abort;
            }
' \
'            if (s->header.len == 0) {
                Tracef(s->uv->tracer, "message has zero length");
                goto abort;
            }
            if (s->header.len > UV__MAX_HEADER_LEN) {
                uvServerRefuse(s, "header length above the limit");
                goto abort;
            }
' || { echo "engine: could not apply the receive fix (p5, header length)" >&2; exit 1; }
replace_once "$dest.tmp/src/uv_recv.c" \
'                Tracef(s->uv->tracer, "decode message: %s",
                       errCodeToString(rv));
                goto abort;
            }
' \
'                Tracef(s->uv->tracer, "decode message: %s",
                       errCodeToString(rv));
                uvServerRefuse(s, "malformed header"); /* prevail p5 */
                goto abort;
            }

            /* prevail p5: entries without a payload would have no batch to
             * point into (the core frees entries[0].batch). */
            if (s->message.type == RAFT_APPEND_ENTRIES &&
                s->message.append_entries.n_entries > 0 &&
                s->payload.len == 0) {
                uvServerRefuse(s, "entries without data");
                goto abort;
            }
' || { echo "engine: could not apply the receive fix (p5, decode)" >&2; exit 1; }
replace_once "$dest.tmp/src/uv_recv.c" \
'                case RAFT_APPEND_ENTRIES:
                    payload.base = s->payload.base;
' \
'                case RAFT_APPEND_ENTRIES:
                    /* prevail p5: no entry may point past the payload. */
                    if (!uvEntriesFit(s->message.append_entries.entries,
                                      s->message.append_entries.n_entries,
                                      s->payload.len)) {
                        uvServerRefuse(s, "entries longer than their data");
                        goto abort;
                    }
                    payload.base = s->payload.base;
' || { echo "engine: could not apply the receive fix (p5, payload)" >&2; exit 1; }

# p6, what a message means (src/recv.c, src/legacy.c, src/uv_recv.c): checked by recvMessage
# before any handler changes state; a refused message is freed by recvCb, which zeroes its type,
# and the transport then closes the connection.
replace_once "$dest.tmp/src/recv.c" \
'#include "recv.h"
' \
'#include "recv.h"

#include <stdio.h>
' || { echo "engine: could not apply the receive fix (p6, include)" >&2; exit 1; }
replace_once "$dest.tmp/src/recv.c" \
'#include "tracing.h"
' \
'#include "configuration.h"
#include "tracing.h"
#include "trail.h"
' || { echo "engine: could not apply the receive fix (p6, include trail)" >&2; exit 1; }
replace_once "$dest.tmp/src/recv.c" \
'/* Dispatch a single RPC message to the appropriate handler. */
int recvMessage(struct raft *r, struct raft_message *message)
{
    raft_id id = message->server_id;
    const char *address = message->server_address;
    int rv = 0;
' \
'/* prevail p6: what no correct peer sends, checked before any handler runs
 * (the handlers assert it, or return RAFT_SHUTDOWN, which aborts in recvCb). */

/* Whether this server committed an entry at index with a term other than
 * term. */
static bool recvConflictsWithCommitted(const struct raft *r,
                                       raft_index index,
                                       raft_term term)
{
    raft_term local_term;
    if (index == 0 || index > r->commit_index) {
        return false;
    }
    local_term = TrailTermOf(&r->trail, index);
    return local_term != 0 && local_term != term;
}

static bool recvIsConfiguration(const struct raft_buffer *buf)
{
    struct raft_configuration c;
    bool ok;
    if (configurationDecode(buf, &c) != 0) {
        return false;
    }
    ok = c.n > 0;
    configurationClose(&c);
    return ok;
}

static const char *recvRefuseEntries(const struct raft_append_entries *args)
{
    raft_term last_term = args->prev_log_term;
    unsigned i;
    for (i = 0; i < args->n_entries; i++) {
        const struct raft_entry *entry = &args->entries[i];
        /* TrailAppend asserts that terms never go down. */
        if (entry->term == 0 || entry->term < last_term ||
            entry->term > args->term) {
            return "entry terms out of order";
        }
        last_term = entry->term;
        if (entry->type == RAFT_CHANGE && !recvIsConfiguration(&entry->buf)) {
            return "a configuration entry that does not decode";
        }
    }
    return NULL;
}

static const char *recvRefuseAppendEntries(
    const struct raft *r,
    const struct raft_append_entries *args)
{
    const char *reason;
    unsigned i;
    if ((args->prev_log_index == 0) != (args->prev_log_term == 0)) {
        return "previous index and term not both zero or both set";
    }
    reason = recvRefuseEntries(args);
    if (reason != NULL) {
        return reason;
    }
    if (args->term < r->current_term) {
        return NULL; /* Answered as stale. */
    }
    if (r->state == RAFT_LEADER && args->term == r->current_term) {
        return "a second leader in this server'"'"'s term";
    }
    if (recvConflictsWithCommitted(r, args->prev_log_index,
                                   args->prev_log_term)) {
        return "previous entry conflicts with a committed one";
    }
    for (i = 0; i < args->n_entries; i++) {
        raft_index index = args->prev_log_index + 1 + i;
        if (index > r->commit_index) {
            break;
        }
        if (recvConflictsWithCommitted(r, index, args->entries[i].term)) {
            return "an entry conflicts with a committed one";
        }
    }
    return NULL;
}

static const char *recvRefuseInstallSnapshot(
    const struct raft *r,
    const struct raft_install_snapshot *args)
{
    if (args->last_index == 0 || args->last_term == 0) {
        return "snapshot index or term zero";
    }
    if (args->conf.n == 0 || args->conf_index > args->last_index) {
        return "snapshot configuration empty or past the snapshot";
    }
    if (args->term < r->current_term) {
        return NULL; /* Answered as stale. */
    }
    if (r->state == RAFT_LEADER && args->term == r->current_term) {
        return "a second leader in this server'"'"'s term";
    }
    if (recvConflictsWithCommitted(r, args->last_index, args->last_term)) {
        return "snapshot conflicts with a committed entry";
    }
    return NULL;
}

static const char *recvRefusal(const struct raft *r,
                               const struct raft_message *message)
{
    const struct raft_request_vote_result *vote;
    switch (message->type) {
        case RAFT_APPEND_ENTRIES:
            return recvRefuseAppendEntries(r, &message->append_entries);
        case RAFT_INSTALL_SNAPSHOT:
            return recvRefuseInstallSnapshot(r, &message->install_snapshot);
        case RAFT_REQUEST_VOTE_RESULT:
            /* recvRequestVoteResult asserts that a server two terms ahead
             * never grants a pre-vote. */
            vote = &message->request_vote_result;
            if (r->state == RAFT_CANDIDATE && r->candidate_state.in_pre_vote &&
                vote->term > r->current_term + 1 && vote->vote_granted) {
                return "pre-vote granted from a term ahead";
            }
            return NULL;
        default:
            return NULL;
    }
}

/* Dispatch a single RPC message to the appropriate handler. */
int recvMessage(struct raft *r, struct raft_message *message)
{
    raft_id id = message->server_id;
    const char *address = message->server_address;
    const char *refusal;
    int rv = 0;

    refusal = recvRefusal(r, message); /* prevail p6 */
    if (refusal != NULL) {
        fprintf(stderr,
                "raft: message (type %d) from server %llu (%s) refused: %s; "
                "connection closed\n",
                (int)message->type, (unsigned long long)id, address, refusal);
        return RAFT_MALFORMED;
    }
' || { echo "engine: could not apply the receive fix (p6, checks)" >&2; exit 1; }
replace_once "$dest.tmp/src/legacy.c" \
'    rv = LegacyForwardToRaftIo(r, &event);

    switch (message->type) {
' \
'    rv = LegacyForwardToRaftIo(r, &event);

    /* prevail p6: recvMessage refused the message before any handler saw it
     * (and logged why): free it, and zero its type, which tells the transport
     * to close the connection it came on. */
    if (rv == RAFT_MALFORMED) {
        switch (message->type) {
            case RAFT_APPEND_ENTRIES:
                entryBatchesDestroy(message->append_entries.entries,
                                    message->append_entries.n_entries);
                break;
            case RAFT_INSTALL_SNAPSHOT:
                raft_configuration_close(&message->install_snapshot.conf);
                raft_free(message->install_snapshot.data.base);
                break;
            default:
                break;
        }
        message->type = 0;
        return;
    }

    switch (message->type) {
' || { echo "engine: could not apply the receive fix (p6, legacy)" >&2; exit 1; }
replace_once "$dest.tmp/src/uv_recv.c" \
'static void uvFireRecvCb(struct uvServer *s)
{
    s->uv->recv_cb(s->uv->io, &s->message);
' \
'static void uvFireRecvCb(struct uvServer *s)
{
    bool refused;

    s->uv->recv_cb(s->uv->io, &s->message);

    /* prevail p6: the receiver zeroes the type of a message it refused (and
     * freed): close the connection it came on. */
    refused = s->message.type == 0;
' || { echo "engine: could not apply the receive fix (p6, transport)" >&2; exit 1; }
replace_once "$dest.tmp/src/uv_recv.c" \
'    s->payload.base = NULL;
    s->payload.len = 0;
}
' \
'    s->payload.base = NULL;
    s->payload.len = 0;

    if (refused) {
        uvServerAbort(s);
    }
}
' || { echo "engine: could not apply the receive fix (p6, close)" >&2; exit 1; }
# p7 (issue 13, failover time; docs/engine-patches.md): a pre-candidate that refuses another's
# pre-vote because its own log is more up to date starts its pre-election again at once. The
# other is campaigning, so it no longer has a leader and would now grant the pre-vote it
# refused a moment ago "while it had a leader"; without this, the one node that can win waits
# out a whole new randomized election timeout (200–400 ms by default) after the old leader's
# death.
replace_once "$dest.tmp/src/recv_request_vote.c" \
'    electionVote(r, args, &result->vote_granted);

reply:
' \
'    electionVote(r, args, &result->vote_granted);

    /* prevail p7: a pre-vote refused for a less up-to-date log, while we are a
     * pre-candidate. The requester is campaigning too, so it has no leader any
     * more: our own pre-vote, which it may have refused while it still had
     * one, would be granted now. Ask again at once rather than after a whole
     * new election timeout. Only a less up-to-date server can trigger this,
     * so two servers never trigger each other. */
    if (args->pre_vote && !result->vote_granted &&
        r->state == RAFT_CANDIDATE && r->candidate_state.in_pre_vote) {
        infof("remote pre-candidate is behind -> restart pre-election");
        electionStart(r);
    }

reply:
' || { echo "engine: could not apply the pre-election fix (p7)" >&2; exit 1; }
# p8 (issue 13, failover time; docs/engine-patches.md): two pre-candidates with equal logs each
# granted the other's pre-vote, so both became candidates, each voted for itself and the
# election was lost by both (a split vote: another whole randomized timeout). Within the first
# election timeout of its campaign, a pre-candidate now refuses the pre-vote of a higher id with
# a log equal to its own, and asks for its own pre-votes again; the higher id grants those.
# After that first timeout it grants as before, so a lower id that cannot win (a partial
# partition) does not stop a higher one for long.
replace_once "$dest.tmp/include/raft.h" \
'            bool in_pre_vote;            /* True in pre-vote phase. */
#if !defined(RAFT__LEGACY_no)
            uint64_t reserved[8]; /* Future use */
#endif
        } candidate_state;
' \
'            bool in_pre_vote;            /* True in pre-vote phase. */
            union {
                raft_time campaign_start; /* When it left the follower state. */
#if !defined(RAFT__LEGACY_no)
                uint64_t reserved[8]; /* Future use */
#endif
            };
        } candidate_state;
' || { echo "engine: could not apply the split-vote fix (p8, state)" >&2; exit 1; }
replace_once "$dest.tmp/src/convert.c" \
'    r->candidate_state.in_pre_vote = disrupt_leader ? false : r->pre_vote;
' \
'    r->candidate_state.in_pre_vote = disrupt_leader ? false : r->pre_vote;
    r->candidate_state.campaign_start = r->now; /* prevail p8 */
' || { echo "engine: could not apply the split-vote fix (p8, start)" >&2; exit 1; }
replace_once "$dest.tmp/src/recv_request_vote.c" \
'#include "tracing.h"
' \
'#include "tracing.h"
#include "trail.h"
' || { echo "engine: could not apply the split-vote fix (p8, include)" >&2; exit 1; }
replace_once "$dest.tmp/src/recv_request_vote.c" \
'    if (!args->pre_vote) {
        assert(r->current_term == args->term);
    }

' \
'    if (!args->pre_vote) {
        assert(r->current_term == args->term);
    }

    /* prevail p8: two pre-candidates with equal logs would each grant the
     * other a pre-vote, then both stand, each votes for itself and neither
     * wins (a split vote, lost for a whole new election timeout). Break the
     * tie by id: refuse a higher id with an equal log and ask for our own
     * pre-votes again, which it grants. Only in the first election timeout of
     * our campaign, so that a lower id which cannot win does not hold back a
     * higher one that can. Pre-votes change no term and no vote: safety is
     * untouched. */
    if (args->pre_vote && r->state == RAFT_CANDIDATE &&
        r->candidate_state.in_pre_vote && args->candidate_id > r->id &&
        args->last_log_index == TrailLastIndex(&r->trail) &&
        args->last_log_term == TrailLastTerm(&r->trail) &&
        r->now - r->candidate_state.campaign_start < r->election_timeout) {
        infof("remote pre-candidate has an equal log and a higher id -> "
              "reject, restart pre-election");
        electionStart(r);
        goto reply;
    }

' || { echo "engine: could not apply the split-vote fix (p8, tie)" >&2; exit 1; }
mv "$dest.tmp" "$dest"
touch "$stamp"
echo "engine: raft $RAFT_VERSION unpacked in $dest"

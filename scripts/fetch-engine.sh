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
stamp=$dest/.prevail-engine-$RAFT_VERSION-p3

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
mv "$dest.tmp" "$dest"
touch "$stamp"
echo "engine: raft $RAFT_VERSION unpacked in $dest"

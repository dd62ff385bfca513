#!/usr/bin/env bash
# Build the PersonaGen image from the repository's Dockerfile and run it offline, without Docker.
#
# For machines that reach Debian's mirror and PyPI but not Docker Hub. As root, it
#   1. installs buildah and debootstrap with apt-get when missing,
#   2. debootstraps a Debian bookworm root (python3, venv, pip, ca-certificates) from the
#      machine's own Debian mirror and imports it as the local image localhost/pybase:bookworm,
#   3. builds the Dockerfile with --build-arg BASE_IMAGE=localhost/pybase:bookworm,
#   4. runs, inside the image and with no network: `personagen --version` and the bundled
#      example (examples/home-buying/spec.yaml) into a host directory mounted at /out, and
#      checks that the run wrote a bundle with metadata.json,
#   5. prints the build time and the image size, and removes its images, containers and
#      temporary directories (all under one private buildah store) unless KEEP=1.
#
# Environment:
#   KEEP=1        keep the store, image and output; prints where they are.
#   MIRROR=URL    Debian mirror (default: the bookworm URI in /etc/apt/sources.list[.d]).
#   WHEELS=auto   reuse a llama-cpp-python wheel the host's pip cache already built (same
#                 version as pyproject.toml; the host must be bookworm/glibc 2.36 or older),
#                 skipping the ~6 min compile; WHEELS=none compiles in the builder as
#                 `docker build` does; WHEELS=DIR uses the wheels in DIR.
#   BASE_ROOTFS=DIR  use an existing debootstrapped bookworm root instead of making one.
#   WORKDIR_PARENT=DIR  where the temporary store goes (default /var/tmp; vfs needs ~6 GB).
# Usage: sudo .ci/container.sh   (from anywhere; it finds the repository from its own path)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE_TAG="localhost/pybase:bookworm"
IMAGE_TAG="localhost/personagen:container-test"
KEEP="${KEEP:-0}"
WHEELS="${WHEELS:-auto}"

say() { printf 'container: %s\n' "$*"; }
die() { printf 'container: FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = "0" ] || die "needs root (debootstrap and buildah's vfs store); run with sudo"

# --- tools ----------------------------------------------------------------------------------
if ! command -v buildah >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
    say "installing buildah and debootstrap with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends buildah debootstrap ca-certificates >/dev/null
fi

# The first bookworm URI in apt's sources (deb822 .sources stanzas or one-line .list entries).
detect_mirror() {
    local f line uris="" suites="" word
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        # A blank line ends a stanza; the trailing echo flushes the last one.
        while IFS= read -r line || [ -n "$line" ]; do
            case "$line" in
                URIs:*) uris="${line#URIs:}" ;;
                Suites:*) suites=" ${line#Suites:} " ;;
                "")
                    if [[ "$suites" == *" bookworm "* ]] && [ -n "$uris" ]; then
                        read -r word _ <<<"$uris"
                        echo "$word"
                        return 0
                    fi
                    uris="" suites="" ;;
            esac
        done < <(cat "$f"; echo)
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        # deb [options] URI bookworm components...
        word="$(sed -nE 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]]+bookworm[[:space:]].*/\2/p' "$f" | head -n1)"
        if [ -n "$word" ]; then
            echo "$word"
            return 0
        fi
    done
    echo "http://deb.debian.org/debian"
}
MIRROR="${MIRROR:-$(detect_mirror)}"

# --- a private store: nothing shared with other buildah users, one rm -rf to clean ----------
WORK="$(mktemp -d "${WORKDIR_PARENT:-/var/tmp}/personagen-container.XXXXXX")"
BA=(buildah --root "$WORK/store" --runroot "$WORK/run" --storage-driver vfs)
CTR=""

cleanup() {
    local rc=$?
    if [ "$KEEP" = "1" ]; then
        say "KEEP=1: kept $WORK (image $IMAGE_TAG, output in $WORK/out)"
        say "  e.g. ${BA[*]} images"
        return "$rc"
    fi
    if [ -n "$CTR" ]; then "${BA[@]}" rm "$CTR" >/dev/null 2>&1 || true; fi
    "${BA[@]}" rm --all >/dev/null 2>&1 || true
    "${BA[@]}" rmi --all --force >/dev/null 2>&1 || true
    # Never delete through a mount that outlived a container: unmount first, stay on this fs.
    local mnt
    while read -r mnt; do
        umount -l "$mnt" 2>/dev/null || true
    done < <(awk -v w="$WORK" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r)
    rm -rf --one-file-system "$WORK" || true
    say "cleaned up $WORK"
    return "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

T0=$SECONDS

# --- 1. the local base image --------------------------------------------------------------
mkdir -p "$WORK/base"
if [ -n "${BASE_ROOTFS:-}" ]; then
    [ -x "$BASE_ROOTFS/usr/bin/python3" ] || die "BASE_ROOTFS=$BASE_ROOTFS has no usr/bin/python3"
    ROOTFS="$BASE_ROOTFS"
    say "base: using the root at $ROOTFS"
else
    ROOTFS="$WORK/rootfs"
    say "base: debootstrap bookworm from $MIRROR"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -n 20 "$WORK/debootstrap.log" >&2; die "debootstrap from $MIRROR"; }
    # apt in the build runs `apt-get update` itself; the downloaded .debs are dead weight.
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
fi
tar --numeric-owner -C "$ROOTFS" -cf "$WORK/base/rootfs.tar" .
{
    echo "FROM scratch"
    echo "ADD rootfs.tar /"
    # A machine behind a TLS-inspecting proxy trusts extra CAs (Debian keeps them in
    # /usr/local/share/ca-certificates); without them pip in the build fails with
    # CERTIFICATE_VERIFY_FAILED. They go into this local base only, never the Dockerfile.
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        mkdir -p "$WORK/base/extra-ca"
        cp /usr/local/share/ca-certificates/*.crt "$WORK/base/extra-ca/"
        echo "COPY extra-ca/ /usr/local/share/ca-certificates/"
        echo "RUN update-ca-certificates"
        say "base: trusting the host's extra CAs: $(cd "$WORK/base/extra-ca" && echo *.crt)" >&2
    fi
    # pip's own certifi bundle would ignore the system store.
    echo "ENV LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt" \
        "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" \
        "REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt"
    echo 'CMD ["python3"]'
} >"$WORK/base/Containerfile"
"${BA[@]}" bud --isolation chroot --quiet -t "$BASE_TAG" "$WORK/base" >/dev/null
rm -f "$WORK/base/rootfs.tar"
if [ -z "${BASE_ROOTFS:-}" ]; then rm -rf --one-file-system "$ROOTFS"; fi
"${BA[@]}" run --isolation chroot "$("${BA[@]}" from --pull=never "$BASE_TAG")" -- \
    python3 -c 'import sys, venv; print("base: python", sys.version.split()[0])'
T_BASE=$((SECONDS - T0))
say "base: $BASE_TAG ready in ${T_BASE}s"

# --- 2. the PersonaGen image --------------------------------------------------------------
BUILD_ARGS=(--build-arg "BASE_IMAGE=$BASE_TAG")
LLAMA_VERSION="$(sed -nE 's/.*"llama-cpp-python==([0-9.]+)".*/\1/p' "$REPO/pyproject.toml" | head -n1)"
case "$WHEELS" in
    none | "") say "build: compiling llama-cpp-python $LLAMA_VERSION in the builder" ;;
    auto)
        wheel="$(find "${PIP_CACHE_DIR:-$HOME/.cache/pip}/wheels" -name \
            "llama_cpp_python-${LLAMA_VERSION}-*.whl" 2>/dev/null | head -n1 || true)"
        if [ -n "$wheel" ]; then
            mkdir -p "$WORK/wheels"
            cp "$wheel" "$WORK/wheels/"
            BUILD_ARGS+=(--volume "$WORK/wheels:/wheels:ro" --build-arg "WHEELS=/wheels")
            say "build: reusing $(basename "$wheel") from the host's pip cache (WHEELS=none compiles)"
        else
            say "build: no cached llama-cpp-python $LLAMA_VERSION wheel; compiling in the builder"
        fi
        ;;
    *)
        [ -d "$WHEELS" ] || die "WHEELS=$WHEELS is not a directory"
        BUILD_ARGS+=(--volume "$(cd "$WHEELS" && pwd):/wheels:ro" --build-arg "WHEELS=/wheels")
        say "build: wheels from $WHEELS"
        ;;
esac
say "build: $IMAGE_TAG from $REPO/Dockerfile (log: $WORK/build.log)"
T1=$SECONDS
if ! "${BA[@]}" bud --isolation chroot --pull=never "${BUILD_ARGS[@]}" \
    -f "$REPO/Dockerfile" -t "$IMAGE_TAG" "$REPO" >"$WORK/build.log" 2>&1; then
    tail -n 40 "$WORK/build.log" >&2
    die "image build (full log above: $WORK/build.log; KEEP=1 keeps it)"
fi
T_BUILD=$((SECONDS - T1))
IMAGE_SIZE="$("${BA[@]}" images --format '{{.Size}}' "$IMAGE_TAG" | head -n1)"
BASE_SIZE="$("${BA[@]}" images --format '{{.Size}}' "$BASE_TAG" | head -n1)"
say "build: done in ${T_BUILD}s"

# --- 3. run it, offline -------------------------------------------------------------------
OUT="$WORK/out"
mkdir -p "$OUT"
chown 1000:1000 "$OUT"  # the image runs as the non-root user `personagen` (uid 1000)
CTR="$("${BA[@]}" from --pull=never --name "personagen-test-$$" "$IMAGE_TAG")"
# buildah refuses --network with --isolation chroot, so the run goes into a fresh network
# namespace of its own (unshare --net: only a loopback that is down) instead.
run_in() {
    unshare --net -- "${BA[@]}" run --isolation chroot --volume "$OUT:/out" "$CTR" -- "$@"
}
# Prove the network really is off before calling the run offline.
PROBE="$(run_in python3 -c '
import socket
try:
    socket.create_connection(("1.1.1.1", 80), timeout=5)
    print("ONLINE")
except OSError as exc:
    print("OFFLINE", exc)
')" || die "cannot run a command in the image"
[[ "$PROBE" == OFFLINE* ]] || die "the container reached the network: $PROBE"
say "run: network is off inside the container (${PROBE#OFFLINE })"
VERSION="$(run_in personagen --version)"
say "run: personagen --version -> $VERSION"
[[ "$VERSION" == personagen* ]] || die "unexpected --version output: $VERSION"
run_in id -un | grep -qx personagen || die "the image does not run as the user personagen"

T2=$SECONDS
set +e
run_in personagen run examples/home-buying/spec.yaml --out /out --quiet >"$WORK/run.log" 2>&1
RUN_RC=$?
set -e
T_RUN=$((SECONDS - T2))
tail -n 15 "$WORK/run.log"
metadata="$(find "$OUT" -mindepth 2 -maxdepth 2 -name metadata.json | head -n1)"
[ -n "$metadata" ] || die "the example wrote no metadata.json under /out (exit $RUN_RC)"
bundle="$(basename "$(dirname "$metadata")")"
for f in qa.jsonl rejected.jsonl report.html; do
    [ -f "$OUT/$bundle/$f" ] || die "bundle $bundle has no $f"
done
SUMMARY="$(run_in python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
c = m["counts"]
print("status=%s accepted=%s rejected=%s unverified=%s questions=%s iterations=%s model=%s" % (
    m["status"], c["accepted"], c["rejected"], c.get("unverified", 0), c["questions"],
    m["iterations"], m["model"]))
' "/out/$bundle/metadata.json")"
# 0: done with accepted pairs; 3: done, accepted nothing (the 135M embedded model can reject
# all of the example's few pairs): both ran the whole graph offline and wrote the bundle.
case "$RUN_RC" in
    0 | 3) ;;
    *) die "personagen run exited $RUN_RC ($SUMMARY)" ;;
esac

say "example: bundle $bundle in ${T_RUN}s: $SUMMARY"
say "RESULT build_seconds=$T_BUILD base_seconds=$T_BASE image_size=$IMAGE_SIZE base_size=$BASE_SIZE"
say "RESULT example $SUMMARY exit=$RUN_RC"
say "total ${SECONDS}s"

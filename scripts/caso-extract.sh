#!/usr/bin/env bash
# Drop-in replacement for the EGI appliance's /usr/local/bin/caso-extract.sh:
# runs caso-extract in its container with the same host files as the Python
# image had (caso.conf, voms.json, /var/spool/caso, /var/spool/apel), the
# configuration read-only, the root file system read-only, as uid 65532.
# Arguments are passed on (e.g. --dry-run). Install it as
# /usr/local/bin/caso-extract.sh; deploy/cron/cloud-accounting runs it hourly.
#
# Environment (all optional):
#   CASO_EXTRACT_IMAGE  image name (default cloud-accounting/caso-extract)
#   TAG                 image tag (default latest)
#   CASO_CONF, VOMS_JSON, CASO_SPOOL, APEL_SPOOL   host paths (appliance defaults)
#   DOCKER_RUN_OPTS     extra `docker run` options, split on white space (e.g.
#                       "--network accounting --dns 192.0.2.53 -v /etc/hosts:/etc/hosts:ro")
#   CLOUD_ACCOUNTING_NO_OWNER_CHECK=1   skip the spool ownership check (for
#                       sites that grant uid 65532 access another way, e.g. ACLs)
#
# The container user (uid 65532) must own the spools. The Python images ran as
# root, so once, on migration: chown -R 65532:65532 /var/spool/caso /var/spool/apel
set -euo pipefail

image=${CASO_EXTRACT_IMAGE:-cloud-accounting/caso-extract}
tag=${TAG:-latest}
user=65532:65532
caso_conf=${CASO_CONF:-/etc/caso/caso.conf}
voms_json=${VOMS_JSON:-/etc/caso/voms.json}
caso_spool=${CASO_SPOOL:-/var/spool/caso}
apel_spool=${APEL_SPOOL:-/var/spool/apel}

die() {
  echo "caso-extract.sh: $*" >&2
  exit 1
}

for f in "$caso_conf" "$voms_json"; do
  [ -f "$f" ] || die "$f is missing (a bind mount of a missing file would create a directory)"
done
# Every entry of a spool must belong to the container user: the first one
# that does not is named, with the one-time fix.
if [ "${CLOUD_ACCOUNTING_NO_OWNER_CHECK:-0}" != 1 ]; then
  for d in "$caso_spool" "$apel_spool"; do
    [ -d "$d" ] || die "$d is missing: mkdir -p $d && chown ${user} $d"
    bad=$(find "$d" ! -uid "${user%%:*}" -print -quit)
    [ -z "$bad" ] || die "$bad is not owned by uid ${user%%:*}, the containers' user (the Python images ran as root); fix once with: chown -R $user $caso_spool $apel_spool"
  done
fi

# --pull never: the image must have been built or loaded here. A name such as
# cloud-accounting/... on Docker Hub could belong to anyone, and the container
# gets the site's configuration (and, for ssmsend, the host key).
read -r -a site_opts <<<"${DOCKER_RUN_OPTS:-}"
exec docker run --pull never --rm --read-only --user "$user" --cap-drop ALL --security-opt no-new-privileges \
  -v "$voms_json:/etc/caso/voms.json:ro" \
  -v "$caso_conf:/etc/caso/caso.conf:ro" \
  -v "$caso_spool:/var/spool/caso" \
  -v "$apel_spool:/var/spool/apel" \
  "${site_opts[@]}" \
  "$image:$tag" --config-file /etc/caso/caso.conf "$@"

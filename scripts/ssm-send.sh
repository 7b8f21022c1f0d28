#!/usr/bin/env bash
# Drop-in replacement for the EGI appliance's /usr/local/bin/ssm-send.sh:
# runs ssmsend in its container with the same host files as the Python image
# had (/etc/grid-security read-only, /var/spool/apel), plus the host's
# /etc/apel/sender.cfg read-only (the Python image had its own copy baked in),
# the root file system read-only, as uid 65532. Arguments are passed on.
# Install it as /usr/local/bin/ssm-send.sh; deploy/cron/cloud-accounting runs
# it every six hours.
#
# Environment (all optional):
#   SSMSEND_IMAGE   image name (default cloud-accounting/ssmsend)
#   TAG             image tag (default latest)
#   SENDER_CFG, GRID_SECURITY, APEL_SPOOL   host paths (appliance defaults)
#   DOCKER_RUN_OPTS extra `docker run` options, split on white space (e.g.
#                   "--network accounting --dns 192.0.2.53 -v /etc/hosts:/etc/hosts:ro")
#   CLOUD_ACCOUNTING_NO_OWNER_CHECK=1   skip the ownership and key checks (for
#                   sites that grant uid 65532 access another way, e.g. ACLs)
#
# The container user (uid 65532) must own /var/spool/apel and be able to read
# the host key (see the migration notes in README.md).
set -euo pipefail

image=${SSMSEND_IMAGE:-cloud-accounting/ssmsend}
tag=${TAG:-latest}
user=65532:65532
uid=${user%%:*}
gid=${user##*:}
sender_cfg=${SENDER_CFG:-/etc/apel/sender.cfg}
grid_security=${GRID_SECURITY:-/etc/grid-security}
apel_spool=${APEL_SPOOL:-/var/spool/apel}

die() {
  echo "ssm-send.sh: $*" >&2
  exit 1
}

# True when uid:gid may read FILE by its owner, group or other bits (no
# supplementary groups in the container; ACLs are not looked at).
readable_by_container() {
  local owner group mode
  read -r owner group mode < <(stat -L -c '%u %g %a' "$1")
  mode=$((8#$mode))
  { [ "$owner" = "$uid" ] && ((mode & 8#400)); } ||
    { [ "$group" = "$gid" ] && ((mode & 8#040)); } ||
    ((mode & 8#004))
}

[ -f "$sender_cfg" ] || die "$sender_cfg is missing (the Python image had its own; copy the one you used into $sender_cfg)"
[ -d "$grid_security" ] || die "$grid_security is missing"
if [ "${CLOUD_ACCOUNTING_NO_OWNER_CHECK:-0}" != 1 ]; then
  [ -d "$apel_spool" ] || die "$apel_spool is missing: mkdir -p $apel_spool && chown $user $apel_spool"
  bad=$(find "$apel_spool" ! -uid "$uid" -print -quit)
  [ -z "$bad" ] || die "$bad is not owned by uid $uid, the container's user (the Python image ran as root); fix once with: chown -R $user $apel_spool"
  # The key sender.cfg names in [certificates] (configparser: "key: v" or
  # "key = v"), by default the host key; a path under /etc/grid-security is
  # looked at in the host directory mounted there.
  key=$(awk '
    /^[[:space:]]*\[/ { sec = $0; gsub(/[[:space:]\[\]]/, "", sec); next }
    sec == "certificates" && tolower($0) ~ /^key[[:space:]]*[:=]/ {
      sub(/^[^:=]*[:=][[:space:]]*/, ""); sub(/[[:space:]]+$/, ""); print; exit
    }' "$sender_cfg")
  key=${key:-/etc/grid-security/hostkey.pem}
  key=${key/#\/etc\/grid-security\//$grid_security/}
  if [ -e "$key" ] && ! readable_by_container "$key"; then
    die "$key is not readable by uid $uid, the container's user; e.g. chown $uid $key (keeps mode 0600; root still reads it), or point [certificates] key at a copy owned by $uid (see README.md)"
  fi
fi

# --pull never: the image must have been built or loaded here. A name such as
# cloud-accounting/... on Docker Hub could belong to anyone, and the container
# gets the site's configuration (and, for ssmsend, the host key).
read -r -a site_opts <<<"${DOCKER_RUN_OPTS:-}"
exec docker run --pull never --rm --read-only --user "$user" --cap-drop ALL --security-opt no-new-privileges \
  -v "$grid_security:/etc/grid-security:ro" \
  -v "$sender_cfg:/etc/apel/sender.cfg:ro" \
  -v "$apel_spool:/var/spool/apel" \
  "${site_opts[@]}" \
  "$image:$tag" --config /etc/apel/sender.cfg "$@"

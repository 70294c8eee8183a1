#!/bin/sh
# Add negotiator's two virtio-serial channels to a libvirt domain's persistent definition, for hosts
# without the npm package (`negotiator-host setup GUEST` does the same). Idempotent: a channel already
# there is left alone. Each missing channel goes in with `virsh attach-device --config`, which changes
# only the persistent definition and lets libvirt add the virtio-serial controller and addresses.
# Usage: add-negotiator-channels.sh [-c URI] GUEST      (URI default: $LIBVIRT_DEFAULT_URI or qemu:///system)
# Then stop and start the guest (virsh shutdown GUEST; virsh start GUEST): a reboot is not enough.
set -eu
uri=${LIBVIRT_DEFAULT_URI:-qemu:///system}
if [ "${1:-}" = -c ] && [ $# -ge 2 ]; then uri=$2; shift 2; fi
if [ $# -ne 1 ] || [ -z "$1" ] || [ "${1#-}" != "$1" ]; then sed -n '2,7p' "$0" >&2; exit 2; fi
guest=$1
v() { LC_ALL=C virsh -c "$uri" "$@"; }

command -v virsh >/dev/null || { echo "error: virsh not found: install libvirt-clients" >&2; exit 1; }
if ! info=$(v dominfo "$guest" 2>&1); then
  known=$(v list --all --name 2>/dev/null | grep . | paste -sd ' ' -)
  echo "error: libvirt at $uri has no domain '$guest' ($info); defined domains: ${known:-(none)}" >&2
  exit 1
fi
if ! printf '%s\n' "$info" | grep -q '^Persistent: *yes'; then
  echo "error: '$guest' is a transient domain (no persistent definition to change): make it persistent with" >&2
  echo "  virsh dumpxml --inactive '$guest' > '$guest.xml' && virsh define '$guest.xml'" >&2
  echo "and run this again, or add libvirt/negotiator-channels.xml to the XML you create it from" >&2
  exit 1
fi
xml=$(v dumpxml --inactive "$guest")
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
added=0
for name in negotiator-host-to-guest.0 negotiator-guest-to-host.0; do
  if printf '%s\n' "$xml" | grep -qF "<target type='virtio' name='$name'"; then
    echo "$guest: $name already present"
    continue
  fi
  printf "<channel type='unix'>\n  <target type='virtio' name='%s'/>\n</channel>\n" "$name" > "$tmp"
  v attach-device "$guest" "$tmp" --config >/dev/null
  echo "$guest: added $name"
  added=$((added + 1))
done
if [ "$added" -eq 0 ]; then
  echo "$guest: already present, nothing to do"
else
  echo "$guest: added $added channel(s). They take effect after a full stop and start (a reboot is not enough):"
  echo "  virsh shutdown $guest    (wait for: virsh domstate $guest  ->  shut off)"
  echo "  virsh start $guest"
fi

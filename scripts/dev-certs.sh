#!/usr/bin/env bash
# A development certificate authority and the certificates to try ArcNet with TLS and mTLS
# (docs/security.md, "Transport"). Not for production: the CA key sits beside the certificates.
#
#   bash scripts/dev-certs.sh <dir> [--host <name>]... [<client-name>...]
#
# Writes into <dir>:
#   ca.pem, ca.key                 the CA (reused when present, so certificates issued earlier stay valid)
#   server.pem, server.key         for --tls-cert/--tls-key; SANs localhost, 127.0.0.1, ::1 and each --host
#   <name>.pem, <name>.key         one client certificate per name, subject CN=<name> (a node name, or a
#                                  role such as scheduler), for an agent's or a CLI's --tls-cert/--tls-key
# Keys are mode 0600. Running it again keeps every certificate that still verifies against the CA and
# says what it has (server: the same SANs; client: the same CN), and issues the rest.
set -euo pipefail

die() {
  echo "dev-certs.sh: $*" >&2
  exit 2
}

[ $# -ge 1 ] || die "usage: bash scripts/dev-certs.sh <dir> [--host <name>]... [<client-name>...]"
dir="$1"
shift
hosts=()
clients=()
while [ $# -gt 0 ]; do
  case "$1" in
    --host)
      [ $# -ge 2 ] || die "--host needs a host name"
      [[ "$2" =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]] || die "--host \"$2\" is not a DNS host name"
      hosts+=("$2")
      shift 2
      ;;
    -*) die "unknown option $1 (known: --host <name>)" ;;
    *)
      # The name becomes a file name and a certificate subject: keep it to what is safe for both.
      [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] || die "client name \"$1\" must be letters, digits, '.', '_' or '-' (at most 64)"
      [ "$1" != "ca" ] && [ "$1" != "server" ] || die "client name \"$1\" is taken by the CA or server files"
      clients+=("$1")
      shift
      ;;
  esac
done
command -v openssl >/dev/null 2>&1 || die "openssl is not installed (Debian: apt-get install openssl)"

mkdir -p "$dir"
umask 077
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
days_ca=3650
days_leaf=825

new_key() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
  chmod 600 "$1"
}

# Whether $1 was issued by this CA and is not expiring within a day.
verifies() {
  [ -f "$1" ] && [ -f "${1%.pem}.key" ] &&
    openssl verify -CAfile "$dir/ca.pem" "$1" >/dev/null 2>&1 &&
    openssl x509 -in "$1" -noout -checkend 86400 >/dev/null 2>&1
}

# The certificate's subject alternative names, one per line, sorted (empty when it has none).
sans_of() {
  openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null | tail -n +2 | tr ',' '\n' | sed 's/^ *//; s/^IP Address:/IP:/; /^$/d' | sort
}

cn_of() {
  openssl x509 -in "$1" -noout -subject -nameopt multiline 2>/dev/null | sed -n 's/^ *commonName *= //p'
}

issue() { # issue <name> <subject CN> <extensions file>
  local name="$1" cn="$2" ext="$3"
  new_key "$work/$name.key"
  openssl req -new -key "$work/$name.key" -subj "/O=ArcNet development/CN=$cn" -out "$work/$name.csr" 2>/dev/null
  openssl x509 -req -in "$work/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -CAserial "$work/ca.srl" \
    -days "$days_leaf" -sha256 -extfile "$ext" -out "$work/$name.pem" 2>/dev/null
  # Key and certificate land together, so a run cut short never leaves a pair that does not match.
  mv "$work/$name.key" "$dir/$name.key"
  chmod 644 "$work/$name.pem"
  mv "$work/$name.pem" "$dir/$name.pem"
}

if [ -f "$dir/ca.pem" ] && [ -f "$dir/ca.key" ]; then
  echo "kept    $dir/ca.pem (CA: $(openssl x509 -in "$dir/ca.pem" -noout -subject | sed 's/^subject=//'))"
else
  new_key "$work/ca.key"
  openssl req -x509 -new -key "$work/ca.key" -sha256 -days "$days_ca" -subj "/O=ArcNet development/CN=ArcNet development CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$work/ca.pem" 2>/dev/null
  mv "$work/ca.key" "$dir/ca.key"
  chmod 644 "$work/ca.pem"
  mv "$work/ca.pem" "$dir/ca.pem"
  echo "wrote   $dir/ca.pem, $dir/ca.key (CA, $days_ca days)"
fi

san="DNS:localhost,IP:127.0.0.1,IP:::1"
for host in "${hosts[@]}"; do san="$san,DNS:$host"; done
# openssl prints ::1 as 0:0:0:0:0:0:0:1; compare in that spelling.
want_sans="$(echo "$san" | tr ',' '\n' | sed 's/^IP:::1$/IP:0:0:0:0:0:0:0:1/' | sort)"
cat >"$work/server.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san
EOF
if verifies "$dir/server.pem" && [ "$(sans_of "$dir/server.pem")" = "$want_sans" ]; then
  echo "kept    $dir/server.pem, $dir/server.key (server: ${san//,/, })"
else
  issue server "${hosts[0]:-localhost}" "$work/server.ext"
  echo "wrote   $dir/server.pem, $dir/server.key (server: ${san//,/, }; --tls-cert/--tls-key)"
fi

cat >"$work/client.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
EOF
for name in "${clients[@]}"; do
  if verifies "$dir/$name.pem" && [ "$(cn_of "$dir/$name.pem")" = "$name" ]; then
    echo "kept    $dir/$name.pem, $dir/$name.key (client CN=$name)"
  else
    issue "$name" "$name" "$work/client.ext"
    echo "wrote   $dir/$name.pem, $dir/$name.key (client CN=$name)"
  fi
done
echo "servers: --tls-cert $dir/server.pem --tls-key $dir/server.key --tls-ca $dir/ca.pem"
[ "${#clients[@]}" -eq 0 ] || echo "clients: --tls-ca $dir/ca.pem --tls-cert $dir/<name>.pem --tls-key $dir/<name>.key"

# A throw-away test PKI made with the openssl CLI, for the scripts that need
# one (demo.sh, test-images.sh, setup-activemq.sh). Source it, then:
#
#   pki_ca DIR NAME SUBJECT DAYS
#       a self-signed CA: DIR/NAME.key and DIR/NAME.pem
#   pki_issue DIR NAME SUBJECT CA DAYS EXTENSIONS
#       a key and a certificate signed by DIR/CA: DIR/NAME.key (mode 0600, as
#       a host key must be) and DIR/NAME.pem. EXTENSIONS are openssl x509
#       extension lines, separated by newlines or by '\n' escapes.
#   pki_capath DIR CA
#       DIR/certificates/<subject hash>.0, the layout of
#       /etc/grid-security/certificates (a capath)
#
# RSA-2048 throughout, like the grid host certificates sites have.

pki_ca() {
  local dir=$1 name=$2 subject=$3 days=$4
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days "$days" -sha256 -subj "$subject" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$dir/$name.key" -out "$dir/$name.pem" 2>/dev/null
  chmod 0600 "$dir/$name.key"
}

pki_issue() {
  local dir=$1 name=$2 subject=$3 ca=$4 days=$5 extensions=$6
  openssl req -new -newkey rsa:2048 -nodes -subj "$subject" \
    -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
  chmod 0600 "$dir/$name.key"
  printf '%b\n' "$extensions" >"$dir/$name.ext"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/$ca.pem" -CAkey "$dir/$ca.key" \
    -CAcreateserial -days "$days" -sha256 -extfile "$dir/$name.ext" -out "$dir/$name.pem" 2>/dev/null
  rm -f "$dir/$name.csr" "$dir/$name.ext"
}

pki_capath() {
  local dir=$1 ca=$2
  mkdir -p "$dir/certificates"
  cp "$dir/$ca.pem" "$dir/certificates/$(openssl x509 -hash -noout -in "$dir/$ca.pem").0"
}

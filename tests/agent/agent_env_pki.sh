# tests/agent/agent_env_pki.sh — an NF's bootstrap certificate from the test
# vendor CA in $T (agent_env.sh makes the CA); sourced by agent_env.sh and
# by the Python tests.
# bootstrap_cert NAME UUID [rogue]: $T/NAME.key, $T/NAME.pem (URI SAN urn:uuid:UUID)
bootstrap_cert() {
  local ca=${3:-vendor}
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/$1.key" -subj "/O=$ca/CN=$1" \
    -out "$T/$1.csr" 2>/dev/null
  openssl x509 -req -in "$T/$1.csr" -CA "$T/$ca-root.pem" -CAkey "$T/$ca-root.key" -days 10 -out "$T/$1.pem" \
    -extfile <(printf "subjectAltName=URI:urn:uuid:$2\nextendedKeyUsage=clientAuth\n") 2>/dev/null
}


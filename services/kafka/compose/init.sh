#!/usr/bin/env bash
# The one-shot `kafka-init` service of docker-compose.yml (apache/kafka image): creates or updates
# the SCRAM-SHA-512 users of SCRAM_USERS and adds the ACLs of ACLS, as the super user admin, with
# Kafka's own tools. Idempotent: a user's credential is set again from its secret (so a new
# password file takes effect on the next `up`), an ACL that exists is left as it is.
#   SCRAM_USERS  "user:password-file ..."
#   ACLS         one a line: user resource-type(topic|group) resource-name Operation,Operation
set -euo pipefail

: "${BOOTSTRAP_SERVER:?}" "${ADMIN_PASSWORD_FILE:?}" "${SCRAM_USERS:?}" "${ACLS:?}"
bin=/opt/kafka/bin

secret() {
  if [ ! -s "$1" ]; then
    echo "kafka-init: $1 is missing or empty; run scripts/compose-secrets" >&2
    exit 1
  fi
  local value
  value=$(<"$1")
  if [[ ! $value =~ ^[A-Za-z0-9._~-]+$ ]]; then
    echo "kafka-init: $1 may only hold letters, digits and ._~- (it is quoted in SCRAM settings)" >&2
    exit 1
  fi
  printf '%s' "$value"
}

umask 077
admin=$(mktemp)
trap 'rm -f "$admin"' EXIT
admin_password=$(secret "$ADMIN_PASSWORD_FILE")
cat >"$admin" <<PROPS
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_password";
PROPS

for entry in $SCRAM_USERS; do
  user=${entry%%:*}
  password=$(secret "${entry#*:}")
  echo "kafka-init: SCRAM-SHA-512 credential of $user"
  "$bin/kafka-configs.sh" --bootstrap-server "$BOOTSTRAP_SERVER" --command-config "$admin" \
    --alter --entity-type users --entity-name "$user" \
    --add-config "SCRAM-SHA-512=[password=$password]" </dev/null
done

while read -r user type name operations; do
  [ -n "$user" ] || continue
  case $type in
    topic | group) ;;
    *) echo "kafka-init: unknown resource type $type in ACLS" >&2; exit 1 ;;
  esac
  args=(--add --allow-principal "User:$user" "--$type" "$name")
  IFS=, read -ra ops <<<"$operations"
  for op in "${ops[@]}"; do
    args+=(--operation "$op")
  done
  echo "kafka-init: allow $user $operations on $type $name"
  "$bin/kafka-acls.sh" --bootstrap-server "$BOOTSTRAP_SERVER" --command-config "$admin" "${args[@]}" \
    </dev/null >/dev/null
done <<<"$ACLS"

"$bin/kafka-acls.sh" --bootstrap-server "$BOOTSTRAP_SERVER" --command-config "$admin" --list </dev/null

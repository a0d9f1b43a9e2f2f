#!/usr/bin/env bash
# Entry point of the `kafka` service of docker-compose.yml (apache/kafka image).
#
# The image's own start-up (/etc/kafka/docker/run -> launch) turns the KAFKA_* variables into
# server.properties with kafka.docker.KafkaDockerWrapper, formats the storage and starts the
# broker. Two things are missing for SASL/SCRAM in KRaft, and this script adds them:
#   - the JAAS file with the broker's own credentials (user `admin`, password from the
#     kafka-admin-password secret), which never goes into the compose file or the environment;
#   - admin's SCRAM credential, which the broker needs before it starts (it authenticates to its
#     own SCRAM listener) and which only `kafka-storage format --add-scram` can store (KIP-900).
#     The wrapper formats without it, so it formats a throw-away directory here, and the real
#     log directory is formatted below with --add-scram (a no-op once formatted).
set -euo pipefail
umask 077

: "${CLUSTER_ID:?}" "${KAFKA_LOG_DIRS:?}"
bin=/opt/kafka/bin
config=/opt/kafka/config
secret=/run/secrets/kafka-admin-password

if [ ! -s "$secret" ]; then
  echo "kafka: $secret is missing or empty; run scripts/compose-secrets" >&2
  exit 1
fi
password=$(<"$secret")
if [[ ! $password =~ ^[A-Za-z0-9._~-]+$ ]]; then
  echo "kafka: $secret may only hold letters, digits and ._~- (it is quoted in JAAS and SCRAM settings)" >&2
  exit 1
fi

# server.properties from the KAFKA_* variables, as the image does it.
log_dirs=$KAFKA_LOG_DIRS
scratch=/tmp/kafka-wrapper-format
if ! out=$(KAFKA_LOG_DIRS=$scratch "$bin/kafka-run-class.sh" kafka.docker.KafkaDockerWrapper setup \
      --default-configs-dir /etc/kafka/docker \
      --mounted-configs-dir /mnt/shared/config \
      --final-configs-dir "$config" 2>&1); then
  grep -qi "already formatted" <<<"$out" || { echo "$out" >&2; exit 1; }
fi
sed -i "s|^log\.dirs=.*|log.dirs=$log_dirs|" "$config/server.properties"
if ! grep -qFx "log.dirs=$log_dirs" "$config/server.properties"; then
  echo "kafka: no log.dirs line in $config/server.properties" >&2
  exit 1
fi

# KafkaServer: SCRAM on INTERNAL and HOST (and the broker's client login on INTERNAL, its
# inter-broker listener). controller.KafkaServer: PLAIN on CONTROLLER, admin its only user.
cat >"$config/kafka_server_jaas.conf" <<JAAS
KafkaServer {
    org.apache.kafka.common.security.scram.ScramLoginModule required
    username="admin"
    password="$password";
};
controller.KafkaServer {
    org.apache.kafka.common.security.plain.PlainLoginModule required
    username="admin"
    password="$password"
    user_admin="$password";
};
JAAS
# Client settings of admin, for the health check and for `docker compose exec kafka` sessions.
cat >"$config/admin-client.properties" <<PROPS
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$password";
PROPS

"$bin/kafka-storage.sh" format --ignore-formatted --cluster-id "$CLUSTER_ID" \
  --config "$config/server.properties" \
  --add-scram "SCRAM-SHA-512=[name=admin,password=$password]"
unset password

exec "$bin/kafka-server-start.sh" "$config/server.properties"

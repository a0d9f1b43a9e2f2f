#!/usr/bin/env bash
# Entry point of the `kafka` service of docker-compose.yml (apache/kafka image).
#
# The image's own start-up (/etc/kafka/docker/run -> launch) turns the KAFKA_* variables into
# server.properties with kafka.docker.KafkaDockerWrapper, formats the storage and starts the
# broker. This script adds the JAAS file with the super user admin's password (from the
# kafka-admin-password secret), which never goes into the compose file, the environment or a
# command line: the broker reads it from the file (mode 0600). admin authenticates with PLAIN
# (on INTERNAL and CONTROLLER), so no SCRAM credential has to be stored before the broker
# starts; `txmon services up` (the setup service) then sets the SCRAM credentials of the users by
# duty and their ACLs, as admin.
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
  echo "kafka: $secret may only hold letters, digits and ._~- (it is quoted in the JAAS file)" >&2
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

# INTERNAL: SCRAM-SHA-512 for the users by duty, PLAIN for admin (the broker's own inter-broker login,
# `txmon services up`, the health check). HOST: SCRAM-SHA-512 only. CONTROLLER: PLAIN, admin its
# only user (KRaft cannot authenticate controllers with SCRAM, KAFKA-15513).
cat >"$config/kafka_server_jaas.conf" <<JAAS
internal.KafkaServer {
    org.apache.kafka.common.security.plain.PlainLoginModule required
    username="admin"
    password="$password"
    user_admin="$password";
    org.apache.kafka.common.security.scram.ScramLoginModule required;
};
host.KafkaServer {
    org.apache.kafka.common.security.scram.ScramLoginModule required;
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
sasl.mechanism=PLAIN
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$password";
PROPS
unset password

# The real log directory (the wrapper formatted a scratch one): no credential is stored in it.
"$bin/kafka-storage.sh" format --ignore-formatted --cluster-id "$CLUSTER_ID" \
  --config "$config/server.properties"

exec "$bin/kafka-server-start.sh" "$config/server.properties"

# The txmon image for docker compose: the same locked dependencies as scripts/bootstrap.
FROM python:3.11-slim-bookworm
WORKDIR /opt/txmon
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# The processes run as this unprivileged user, with a fixed uid/gid; its home is the state
# directory (TXMON_STATE_DIR in docker-compose.yml).
RUN groupadd --gid 10001 txmon \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/txmon --create-home --shell /usr/sbin/nologin txmon
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY . .
# The code stays root's (read-only to txmon), except where the tools write at run time: dbt's
# target/ and logs/ in its project, Great Expectations' uncommitted/ in its file context.
RUN pip install --no-cache-dir --no-deps -e . \
 && mkdir -p dbt_project/target dbt_project/logs expectations/gx/uncommitted \
 && chown -R txmon:txmon dbt_project/target dbt_project/logs expectations/gx/uncommitted
USER 10001:10001
ENTRYPOINT ["txmon"]

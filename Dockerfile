# The txmon image for docker compose: the same locked dependencies as scripts/bootstrap.
FROM python:3.11-slim-bookworm
WORKDIR /opt/txmon
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY . .
RUN pip install --no-cache-dir --no-deps -e .
ENTRYPOINT ["txmon"]

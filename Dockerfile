FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY translators ./translators
COPY keystore ./keystore
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 10001 modelport \
    && mkdir -p /data && chown modelport /data

USER modelport
VOLUME ["/data"]
EXPOSE 8080
CMD ["modelport", "--data-dir", "/data", "serve", "--host", "0.0.0.0", "--port", "8080"]

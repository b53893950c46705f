# The S3 server of the compose stack for `make deploy-test`, where no
# registry is reachable (users get motoserver/moto from Docker Hub instead).
# Same moto version as the test suite (constraints.txt); built from the
# locally made base image:
#   docker build -f deploy/ci/moto.Dockerfile --build-arg BASE_IMAGE=... CONTEXT
# with CONTEXT holding constraints.txt only.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
COPY constraints.txt /opt/moto/constraints.txt
RUN python3 -m venv /opt/moto/venv \
 && /opt/moto/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
        --constraint /opt/moto/constraints.txt "moto[server]" \
 && useradd --uid 1000 --gid 0 --no-create-home --shell /usr/sbin/nologin moto
USER 1000
EXPOSE 5000
ENTRYPOINT ["/opt/moto/venv/bin/moto_server"]
CMD ["-H", "0.0.0.0", "-p", "5000"]

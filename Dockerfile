# The one Orgplane image: the `orgplane` binary on a distroless, non-root base.
#   docker build -t orgplane .
#   docker run --rm -p 50051:50051 orgplane all --listen 0.0.0.0:50051 --allow-plaintext
# Kubernetes runs it as `orgplane serve <service>` (see k8s/; TLS in the production overlay).
# Plaintext beyond loopback must be asked for (`--allow-plaintext`): the default command is for a
# container on a developer's machine; give --tls-cert and --tls-key anywhere else.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p orgplane \
 && install -D target/release/orgplane /out/orgplane

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/orgplane /usr/local/bin/orgplane
USER 65532:65532
ENV ORGPLANE_DATA_DIR=/data
EXPOSE 50051
ENTRYPOINT ["/usr/local/bin/orgplane"]
CMD ["all", "--listen", "0.0.0.0:50051", "--allow-plaintext"]

# The chainbatch executor image: the `chainbatch-executor` binary, the shared
# libraries it links, CA certificates for HTTPS to S3, and a writable /tmp for
# sort spills. No shell, no package manager, no toolchain; runs as a non-root
# user. Built from a root filesystem that docker/build.sh assembles, so no
# base image is pulled.
FROM scratch
COPY rootfs/ /
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    TMPDIR=/tmp
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["/usr/local/bin/chainbatch-executor"]
CMD ["--help"]

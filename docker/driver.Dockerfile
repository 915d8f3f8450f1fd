# The chainbatch driver image: the `chainbatch` CLI and the project's conf/,
# for the scheduled daily run on AWS Batch (see terraform/schedule.tf). The
# driver plans, submits executor jobs and commits; it runs no tasks itself.
FROM scratch
COPY rootfs/ /
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    TMPDIR=/tmp
USER 65532:65532
WORKDIR /app
ENTRYPOINT ["/usr/local/bin/chainbatch"]
CMD ["run", "--env", "aws", "--backend", "batch", "--dates", "yesterday"]

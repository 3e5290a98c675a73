#!/bin/sh
# `milvus run standalone` as in the upstream image: the 2.3.5 binary with the libraries it ships with.
export LD_LIBRARY_PATH="/opt/milvus/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export MILVUSCONF=/opt/milvus/configs/
cd /opt/milvus
exec /opt/milvus/bin/milvus "$@"

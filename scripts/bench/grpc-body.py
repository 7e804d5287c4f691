#!/usr/bin/env python3
"""Writes one framed gRPC ModelInferRequest (the Iris row that scripts/bench/oip.sh sends
over REST too, as raw FP32) to FILE, for h2load's -d: a 0 byte (not compressed), the
message's length (4 bytes, big-endian), the message. Runs in target/pyclients
(scripts/requirements/clients.txt), whose tritonclient carries the protocol's messages.

    target/pyclients/bin/python scripts/bench/grpc-body.py FILE
"""
import struct
import sys

import numpy as np
from tritonclient.grpc import service_pb2

request = service_pb2.ModelInferRequest(model_name="iris-mlp")
# The values go in raw_input_contents, as tritonclient sends them.
request.inputs.add(name="features", datatype="FP32", shape=[1, 4])
request.raw_input_contents.append(np.array([5.1, 3.5, 1.4, 0.2], dtype="<f4").tobytes())
message = request.SerializeToString()
with open(sys.argv[1], "wb") as f:
    f.write(b"\x00" + struct.pack(">I", len(message)) + message)

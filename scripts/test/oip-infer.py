#!/usr/bin/env python3
"""One inference request, sent by NVIDIA's tritonclient over HTTP and over gRPC (TLS, the
certificate not verified), printing both answers as one JSON object: the real clients'
view of a model, for tests/it/onnx_images.rs and the Triton-layout checks.

    target/pyclients/bin/python scripts/test/oip-infer.py HOST:PORT < REQUEST.json

REQUEST.json: {"model": NAME, "version": "" or V, "inputs": [{"name", "datatype", "shape",
"data": [...] | "files": [path, ...]}], "outputs": [NAME, ...]}; "files" fills a BYTES input
with the files' bytes. Prints {"http": {OUTPUT: {"shape", "datatype", "data"}}, "grpc": {...}}
with data flattened, and each protocol's "metadata" of the model (as the client returns it);
"error": message in place of the outputs where the server refused.
"""
import json
import ssl
import sys
import tempfile

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, triton_to_np_dtype


def array(spec):
    if "files" in spec:
        blobs = []
        for path in spec["files"]:
            with open(path, "rb") as f:
                blobs.append(f.read())
        return np.array(blobs, dtype=np.object_).reshape(spec["shape"])
    return np.array(spec["data"], dtype=triton_to_np_dtype(spec["datatype"])).reshape(spec["shape"])


def ask(module, client, request):
    if module is grpcclient:
        metadata = client.get_model_metadata(request["model"], as_json=True)
    else:
        metadata = client.get_model_metadata(request["model"])
    answer = {"metadata": metadata}
    inputs = []
    for spec in request["inputs"]:
        one = module.InferInput(spec["name"], list(spec["shape"]), spec["datatype"])
        one.set_data_from_numpy(array(spec))
        inputs.append(one)
    outputs = [module.InferRequestedOutput(name) for name in request["outputs"]]
    try:
        result = client.infer(request["model"], inputs, outputs=outputs,
                              model_version=request.get("version", ""))
    except InferenceServerException as e:
        answer["error"] = str(e)
        return answer
    for name in request["outputs"]:
        values = result.as_numpy(name)
        data = [v.decode() if isinstance(v, bytes) else v.item() for v in values.ravel()]
        answer[name] = {"shape": list(values.shape), "datatype": str(values.dtype), "data": data}
    return answer


def main():
    url = sys.argv[1]
    request = json.load(sys.stdin)
    http = httpclient.InferenceServerClient(
        url=url, ssl=True, insecure=True, ssl_context_factory=ssl._create_unverified_context)
    # The test gateway's certificate is its own root: fetched, then trusted for the name
    # it carries (localhost).
    host, port = url.rsplit(":", 1)
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as pem:
        pem.write(ssl.get_server_certificate((host, int(port))))
    grpc = grpcclient.InferenceServerClient(
        url=url, ssl=True, root_certificates=pem.name,
        channel_args=[("grpc.ssl_target_name_override", "localhost")])
    print(json.dumps({"http": ask(httpclient, http, request),
                      "grpc": ask(grpcclient, grpc, request)}))


if __name__ == "__main__":
    main()

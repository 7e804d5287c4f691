#!/usr/bin/env python3
"""Drives a running infergate with NVIDIA's own Open Inference Protocol clients,
tritonclient[http] and tritonclient[grpc] (target/pyclients: scripts/lib/venv.sh
scripts/requirements/clients.txt), over TLS, and prints what they got as one JSON object for
tests/it/oip_clients.rs to check against /predict.

    target/pyclients/bin/python scripts/test/oip-clients.py HOST:PORT IMAGE_FILE [API_KEY]
"""
import json
import ssl
import sys
import tempfile

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient


def main():
    url, image_path = sys.argv[1], sys.argv[2]
    key = sys.argv[3] if len(sys.argv) > 3 else None
    # A dict each: tritonclient's HTTP client adds its own headers to the one it is given.
    # gRPC metadata keys are lowercase.
    out = http(url, image_path, key and {"Authorization": f"Bearer {key}"})
    out.update(grpc(url, image_path, key and {"authorization": f"Bearer {key}"}))
    print(json.dumps(out))


def http(url, image_path, headers):
    # The test gateway's development certificate is self-signed: no verification.
    client = httpclient.InferenceServerClient(
        url=url, ssl=True, insecure=True, ssl_context_factory=ssl._create_unverified_context)
    out = {
        "live": client.is_server_live(headers=headers),
        "ready": client.is_server_ready(headers=headers),
        "server": client.get_server_metadata(headers=headers),
        "iris_metadata": client.get_model_metadata("iris-mlp", headers=headers),
        "iris_ready": client.is_model_ready("iris-mlp", "1.0.0", headers=headers),
    }

    row = np.array([[6.1, 2.8, 4.7, 1.2]], dtype=np.float32)
    for binary in (False, True):
        features = httpclient.InferInput("features", list(row.shape), "FP32")
        features.set_data_from_numpy(row, binary_data=binary)
        wanted = httpclient.InferRequestedOutput("probabilities", binary_data=binary)
        result = client.infer("iris-mlp", [features], outputs=[wanted], headers=headers)
        out[f"iris_{'binary' if binary else 'json'}"] = result.as_numpy("probabilities").tolist()

    features = httpclient.InferInput("features", list(row.shape), "FP32")
    features.set_data_from_numpy(row)
    top = httpclient.InferRequestedOutput("probabilities", class_count=2)
    result = client.infer("iris-mlp", [features], outputs=[top], model_version="1.0.0",
                          headers=headers)
    out["iris_classification"] = [b.decode() for b in result.as_numpy("probabilities").ravel()]

    with open(image_path, "rb") as f:
        image = np.array([f.read()], dtype=np.object_)
    upload = httpclient.InferInput("image", [1], "BYTES")
    upload.set_data_from_numpy(image, binary_data=True)
    result = client.infer("efficientnet-lite0", [upload],
                          outputs=[httpclient.InferRequestedOutput("probabilities")],
                          headers=headers)
    out["image"] = result.as_numpy("probabilities").ravel().tolist()

    try:
        client.infer("no-such-model", [features], headers=headers)
        out["unknown_model"] = None
    except httpclient.InferenceServerException as e:
        out["unknown_model"] = {"status": e.status(), "message": e.message()}
    return out


def grpc(url, image_path, headers):
    """The same over gRPC (HTTP/2, ALPN h2). The test gateway's certificate is its own
    root: fetched, then trusted for the name it carries (localhost)."""
    host, port = url.rsplit(":", 1)
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as pem:
        pem.write(ssl.get_server_certificate((host, int(port))))
    client = grpcclient.InferenceServerClient(
        url=url, ssl=True, root_certificates=pem.name,
        channel_args=[("grpc.ssl_target_name_override", "localhost")])
    out = {
        "grpc_live": client.is_server_live(headers=headers),
        "grpc_ready": client.is_server_ready(headers=headers),
        "grpc_server": client.get_server_metadata(headers=headers, as_json=True),
        "grpc_iris_metadata": client.get_model_metadata("iris-mlp", headers=headers,
                                                        as_json=True),
        "grpc_iris_ready": client.is_model_ready("iris-mlp", headers=headers),
    }
    row = np.array([[6.1, 2.8, 4.7, 1.2]], dtype=np.float32)
    features = grpcclient.InferInput("features", list(row.shape), "FP32")
    features.set_data_from_numpy(row)
    result = client.infer("iris-mlp", [features],
                          outputs=[grpcclient.InferRequestedOutput("probabilities")],
                          headers=headers)
    out["grpc_iris"] = result.as_numpy("probabilities").tolist()
    top = grpcclient.InferRequestedOutput("probabilities", class_count=2)
    result = client.infer("iris-mlp", [features], outputs=[top], headers=headers)
    out["grpc_iris_classification"] = [
        b.decode() for b in result.as_numpy("probabilities").ravel()]
    with open(image_path, "rb") as f:
        image = np.array([f.read()], dtype=np.object_)
    upload = grpcclient.InferInput("image", [1], "BYTES")
    upload.set_data_from_numpy(image)
    result = client.infer("efficientnet-lite0", [upload], headers=headers)
    out["grpc_image"] = result.as_numpy("probabilities").ravel().tolist()
    try:
        client.infer("no-such-model", [features], headers=headers)
        out["grpc_unknown_model"] = None
    except grpcclient.InferenceServerException as e:
        out["grpc_unknown_model"] = {"status": e.status(), "message": e.message()}
    return out


if __name__ == "__main__":
    main()

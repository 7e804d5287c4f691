# The seed's image model server (../shared/seeds/, "ML Model Service (serve.py)"), as written
# there, run by scripts/bench/vs-seed.sh under gunicorn (2 workers) behind nginx. Changed only
# where marked "# bench:": the model is the one infergate bundles — EfficientNet-Lite0 with the
# same weights (the .pth that scripts/models/setup.sh fetches, in the PyTorch module of
# scripts/models/bench_torch.py, on gunicorn's --pythonpath) and its manifest's
# preprocessing — instead of torchvision's
# pretrained ResNet-18, whose weights come from download.pytorch.org (unreachable here, and
# not the weights infergate serves); ports from REDIS_PORT / DB_PORT.
from flask import Flask, request, jsonify
import torch
import torchvision.models as models
import torchvision.transforms as transforms
from PIL import Image
import io
import redis
import psycopg2
import json
import hashlib
import os
from datetime import datetime
from prometheus_client import Counter, Histogram, generate_latest, REGISTRY
import time

def _bench_model():  # bench: infergate's bundled EfficientNet-Lite0, same weights
    from pathlib import Path
    import bench_torch
    net = bench_torch.EfficientNetLite0()
    state = bench_torch.load_numpy_state(Path(os.environ["SEED_PTH"]))
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return net


app = Flask(__name__)

# Prometheus metrics
REQUEST_COUNT = Counter('prediction_requests_total', 'Total prediction requests')
PREDICTION_DURATION = Histogram('prediction_duration_seconds', 'Prediction duration')
CACHE_HITS = Counter('cache_hits_total', 'Total cache hits')
CACHE_MISSES = Counter('cache_misses_total', 'Total cache misses')

# Load model
print("Loading EfficientNet-Lite0 model...")  # bench:
model = _bench_model()  # bench:
model.eval()
print("Model loaded successfully!")

# Redis connection
cache = redis.Redis(
    host=os.environ.get('REDIS_HOST', 'redis'),
    port=int(os.environ.get('REDIS_PORT', 6379)),  # bench:
    decode_responses=True
)

# Database connection pool
def get_db():
    return psycopg2.connect(
        host=os.environ.get('DB_HOST', 'db'),
        port=int(os.environ.get('DB_PORT', 5432)),  # bench:
        database=os.environ.get('DB_NAME', 'mlapp'),
        user=os.environ.get('DB_USER', 'postgres'),
        password=os.environ.get('DB_PASSWORD', 'postgres')
    )

# Image preprocessing
transform = transforms.Compose([
    transforms.Resize(256),
    transforms.CenterCrop(224),
    transforms.ToTensor(),
    transforms.Normalize(mean=[127 / 255] * 3, std=[128 / 255] * 3)  # bench: the manifest's
])

@app.route('/health')
def health():
    """Health check endpoint"""
    return jsonify({
        'status': 'healthy',
        'model': 'resnet18',
        'timestamp': datetime.utcnow().isoformat()
    }), 200

@app.route('/ready')
def ready():
    """Readiness check - verify all dependencies"""
    health_status = {'status': 'ready', 'checks': {}}

    try:
        cache.ping()
        health_status['checks']['redis'] = 'ok'
    except Exception as e:
        health_status['checks']['redis'] = f'error: {str(e)}'
        health_status['status'] = 'not_ready'

    try:
        conn = get_db()
        conn.close()
        health_status['checks']['database'] = 'ok'
    except Exception as e:
        health_status['checks']['database'] = f'error: {str(e)}'
        health_status['status'] = 'not_ready'

    status_code = 200 if health_status['status'] == 'ready' else 503
    return jsonify(health_status), status_code

@app.route('/predict', methods=['POST'])
def predict():
    """Image classification prediction"""
    REQUEST_COUNT.inc()
    start_time = time.time()

    try:
        if 'file' not in request.files:
            return jsonify({'error': 'No file provided'}), 400

        file = request.files['file']
        img_bytes = file.read()
        img_hash = hashlib.md5(img_bytes).hexdigest()
        cache_key = f'prediction:{img_hash}'

        # Check cache
        cached = cache.get(cache_key)
        if cached:
            CACHE_HITS.inc()
            result = json.loads(cached)
            result['cached'] = True
            PREDICTION_DURATION.observe(time.time() - start_time)
            return jsonify(result), 200

        CACHE_MISSES.inc()

        # Load and preprocess image
        img = Image.open(io.BytesIO(img_bytes)).convert('RGB')
        img_tensor = transform(img).unsqueeze(0)

        # Predict
        with torch.no_grad():
            output = model(img_tensor)
            probabilities = torch.nn.functional.softmax(output[0], dim=0)
            top5_prob, top5_idx = torch.topk(probabilities, 5)

        predictions = []
        for i in range(5):
            predictions.append({
                'class_id': int(top5_idx[i]),
                'confidence': float(top5_prob[i])
            })

        # Log to database
        try:
            conn = get_db()
            cur = conn.cursor()
            cur.execute(
                """
                INSERT INTO predictions
                (image_hash, top_class, confidence, all_predictions, created_at)
                VALUES (%s, %s, %s, %s, %s)
                RETURNING id
                """,
                (
                    img_hash,
                    predictions[0]['class_id'],
                    predictions[0]['confidence'],
                    json.dumps(predictions),
                    datetime.utcnow()
                )
            )
            prediction_id = cur.fetchone()[0]
            conn.commit()
            cur.close()
            conn.close()
        except Exception as e:
            print(f"Database error: {e}")
            prediction_id = None

        result = {
            'prediction_id': prediction_id,
            'image_hash': img_hash,
            'predictions': predictions,
            'cached': False
        }

        # Cache for 1 hour
        cache.setex(cache_key, 3600, json.dumps(result))

        PREDICTION_DURATION.observe(time.time() - start_time)
        return jsonify(result), 200

    except Exception as e:
        return jsonify({'error': str(e)}), 500

@app.route('/metrics')
def metrics():
    """Prometheus metrics endpoint"""
    return generate_latest(REGISTRY), 200, {'Content-Type': 'text/plain; charset=utf-8'}

@app.route('/stats')
def stats():
    """Application statistics"""
    try:
        conn = get_db()
        cur = conn.cursor()

        # Total predictions
        cur.execute('SELECT COUNT(*) FROM predictions')
        total_predictions = cur.fetchone()[0]

        # Recent predictions (last hour)
        cur.execute("""
            SELECT COUNT(*) FROM predictions
            WHERE created_at > NOW() - INTERVAL '1 hour'
        """)
        recent_predictions = cur.fetchone()[0]

        # Average confidence
        cur.execute('SELECT AVG(confidence) FROM predictions')
        avg_confidence = cur.fetchone()[0]

        cur.close()
        conn.close()

        return jsonify({
            'total_predictions': total_predictions,
            'predictions_last_hour': recent_predictions,
            'average_confidence': float(avg_confidence) if avg_confidence else 0
        }), 200

    except Exception as e:
        return jsonify({'error': str(e)}), 500

if __name__ == '__main__':
    app.run(host='0.0.0.0', port=8000)

# The seed's tabular prediction API (../shared/seeds/, "2.3 Adding Redis for Caching"), as
# written there, run by scripts/bench/vs-seed.sh under gunicorn behind nginx. Changed only to
# run beside infergate on one machine: Redis and PostgreSQL ports from REDIS_PORT / DB_PORT
# (the seed relies on Compose's fixed ports), marked "# bench:".
from flask import Flask, request, jsonify
import psycopg2
import redis
import os
import json
import hashlib
from datetime import datetime
import numpy as np

app = Flask(__name__)

# Redis connection
cache = redis.Redis(
    host=os.environ.get('REDIS_HOST', 'redis'),
    port=int(os.environ.get('REDIS_PORT', 6379)),  # bench:
    decode_responses=True
)

def get_db_connection():
    return psycopg2.connect(
        host=os.environ.get('DB_HOST', 'db'),
        port=int(os.environ.get('DB_PORT', 5432)),  # bench:
        database=os.environ.get('DB_NAME', 'mlapp'),
        user=os.environ.get('DB_USER', 'postgres'),
        password=os.environ.get('DB_PASSWORD', 'postgres')
    )

@app.route('/health')
def health():
    health_status = {
        'status': 'healthy',
        'database': 'unknown',
        'cache': 'unknown'
    }

    try:
        conn = get_db_connection()
        conn.close()
        health_status['database'] = 'connected'
    except Exception as e:
        health_status['database'] = f'error: {str(e)}'
        health_status['status'] = 'unhealthy'

    try:
        cache.ping()
        health_status['cache'] = 'connected'
    except Exception as e:
        health_status['cache'] = f'error: {str(e)}'
        health_status['status'] = 'unhealthy'

    return jsonify(health_status), 200 if health_status['status'] == 'healthy' else 500

@app.route('/predict', methods=['POST'])
def predict():
    try:
        data = request.json
        features = data.get('features', [])

        # Create cache key from features
        cache_key = f"prediction:{hashlib.md5(str(features).encode()).hexdigest()}"

        # Check cache
        cached_result = cache.get(cache_key)
        if cached_result:
            cache.incr('cache_hits')
            result = json.loads(cached_result)
            result['cached'] = True
            return jsonify(result), 200

        # Cache miss - compute prediction
        cache.incr('cache_misses')
        prediction = float(np.mean(features))
        confidence = float(np.random.random())

        # Log to database
        conn = get_db_connection()
        cur = conn.cursor()
        cur.execute(
            """
            INSERT INTO predictions (input_features, prediction, confidence, created_at)
            VALUES (%s, %s, %s, %s)
            RETURNING id
            """,
            (str(features), prediction, confidence, datetime.utcnow())
        )
        prediction_id = cur.fetchone()[0]
        conn.commit()
        cur.close()
        conn.close()

        result = {
            'prediction_id': prediction_id,
            'prediction': prediction,
            'confidence': confidence,
            'cached': False
        }

        # Cache the result for 1 hour
        cache.setex(cache_key, 3600, json.dumps(result))

        return jsonify(result), 200

    except Exception as e:
        return jsonify({'error': str(e)}), 500

@app.route('/stats')
def stats():
    try:
        conn = get_db_connection()
        cur = conn.cursor()
        cur.execute('SELECT COUNT(*) FROM predictions')
        total_predictions = cur.fetchone()[0]
        cur.close()
        conn.close()

        cache_hits = int(cache.get('cache_hits') or 0)
        cache_misses = int(cache.get('cache_misses') or 0)
        total_requests = cache_hits + cache_misses
        hit_rate = (cache_hits / total_requests * 100) if total_requests > 0 else 0

        return jsonify({
            'total_predictions': total_predictions,
            'cache_hits': cache_hits,
            'cache_misses': cache_misses,
            'cache_hit_rate': f"{hit_rate:.2f}%"
        }), 200
    except Exception as e:
        return jsonify({'error': str(e)}), 500

if __name__ == '__main__':
    app.run(host='0.0.0.0', port=8000)

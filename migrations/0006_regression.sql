-- Regressors (ONNX models that answer a number): their rows have no confidence, and a
-- shadow comparison of two regressors has no top class to agree on. `prediction` holds the
-- number as text, `top_class` and `all_predictions` are NULL and `[]` as for any row
-- without classes; `confidence` and `shadow_top1_agree` are NULL for these rows, and
-- `shadow_max_delta` is the absolute difference of the two values.
ALTER TABLE predictions ALTER COLUMN confidence DROP NOT NULL;

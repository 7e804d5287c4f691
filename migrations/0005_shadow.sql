-- Shadow mirroring: a share of a model's requests is also run, off the response path, by a
-- candidate version of that model, and the comparison is stored in the primary
-- prediction's row. `shadow_version` is the candidate version that was also run;
-- `shadow_top1_agree` whether the candidate's top class equals the answer's;
-- `shadow_max_delta` the largest |p_answer - p_candidate| over the classes. All three are
-- NULL when the request was not mirrored, and for rows written before these columns existed.
ALTER TABLE predictions ADD COLUMN IF NOT EXISTS shadow_version TEXT;
ALTER TABLE predictions ADD COLUMN IF NOT EXISTS shadow_top1_agree BOOLEAN;
ALTER TABLE predictions ADD COLUMN IF NOT EXISTS shadow_max_delta REAL;

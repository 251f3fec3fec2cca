/// Versioned schema migrations, applied in order by the coordinator at start. A migration is
/// never edited once released: add a new one. Documented in `docs/sql.md`.
enum Schema {
    struct Migration {
        let version: Int
        let name: String
        let sql: String
    }

    static let migrations: [Migration] = [
        Migration(version: 1, name: "runs, agents, shards, samples", sql: """
            CREATE TABLE agents (
                id               text PRIMARY KEY,
                name             text NOT NULL,
                region           text NOT NULL,
                labels           jsonb NOT NULL DEFAULT '{}',
                capacity         int NOT NULL,
                software_version text NOT NULL,
                address          text,
                first_seen       timestamptz NOT NULL DEFAULT now(),
                last_seen        timestamptz NOT NULL DEFAULT now()
            );
            CREATE TABLE runs (
                id            bigserial PRIMARY KEY,
                name          text NOT NULL,
                plan_name     text NOT NULL,
                plan_yaml     text NOT NULL,
                plan          jsonb NOT NULL,
                seed          bigint NOT NULL,
                status        text NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'aborted', 'partial', 'failed')),
                status_reason text,
                created_at    timestamptz NOT NULL DEFAULT now(),
                started_at    timestamptz,
                finished_at   timestamptz
            );
            CREATE TABLE targets (
                run_id       bigint NOT NULL REFERENCES runs ON DELETE CASCADE,
                target_index int NOT NULL,
                name         text NOT NULL,
                kind         text NOT NULL,
                base_url     text NOT NULL,
                model        text NOT NULL,
                PRIMARY KEY (run_id, target_index)
            );
            CREATE TABLE cells (
                run_id       bigint NOT NULL REFERENCES runs ON DELETE CASCADE,
                cell_index   int NOT NULL,
                name         text NOT NULL,
                target_index int NOT NULL,
                scenario     text NOT NULL,
                PRIMARY KEY (run_id, cell_index),
                FOREIGN KEY (run_id, target_index) REFERENCES targets
            );
            CREATE TABLE shards (
                run_id          bigint NOT NULL REFERENCES runs ON DELETE CASCADE,
                shard_index     int NOT NULL,
                agent_id        text NOT NULL REFERENCES agents,
                seed            bigint NOT NULL,
                spec            jsonb NOT NULL,
                status          text NOT NULL CHECK (status IN ('assigned', 'running', 'done', 'aborted', 'lost')),
                clock_offset_us bigint,
                clock_rtt_us    bigint,
                fired           bigint,
                succeeded       bigint,
                failed          bigint,
                late            bigint,
                dropped         bigint,
                batches         bigint,
                PRIMARY KEY (run_id, shard_index)
            );
            -- One row per committed sample batch: a resent batch is recognised and stored once.
            CREATE TABLE sample_batches (
                run_id       bigint NOT NULL,
                shard_index  int NOT NULL,
                batch_seq    bigint NOT NULL,
                rows         int NOT NULL,
                committed_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (run_id, shard_index, batch_seq),
                FOREIGN KEY (run_id, shard_index) REFERENCES shards ON DELETE CASCADE
            );
            -- Raw samples, one row per fired request, partitioned by run (one partition per run).
            CREATE TABLE samples (
                run_id                  bigint NOT NULL,
                shard_index             int NOT NULL,
                batch_seq               bigint NOT NULL,
                request_index           bigint NOT NULL,
                cell_index              int NOT NULL,
                stage_index             int NOT NULL,
                user_index              int NOT NULL,
                intended_at             timestamptz NOT NULL,
                sent_at                 timestamptz NOT NULL,
                send_lag_us             bigint NOT NULL,
                ttfb_us                 bigint,
                ttft_us                 bigint,
                e2e_us                  bigint,
                dns_us                  int,
                connect_us              int,
                tls_us                  int,
                prompt_tokens_requested int NOT NULL,
                prompt_tokens           int,
                output_tokens           int NOT NULL,
                output_tokens_estimated boolean NOT NULL,
                cached_tokens           int,
                http_status             int NOT NULL,
                error_class             text NOT NULL,
                error_detail            text,
                connection_reused       boolean NOT NULL,
                excluded                boolean NOT NULL,
                itl_us                  int[] NOT NULL,
                server_request_id       text
            ) PARTITION BY LIST (run_id);

            -- Every sample with its labels.
            CREATE VIEW request_samples AS
            SELECT s.*, r.name AS run_name, t.name AS target, c.name AS cell, c.scenario,
                   a.name AS agent, a.region,
                   CASE WHEN s.output_tokens >= 2 AND s.ttft_us IS NOT NULL
                        THEN (s.e2e_us - s.ttft_us)::double precision / (s.output_tokens - 1) END AS tpot_us
            FROM samples s
            JOIN runs r ON r.id = s.run_id
            JOIN cells c ON c.run_id = s.run_id AND c.cell_index = s.cell_index
            JOIN targets t ON t.run_id = s.run_id AND t.target_index = c.target_index
            JOIN shards sh ON sh.run_id = s.run_id AND sh.shard_index = s.shard_index
            JOIN agents a ON a.id = sh.agent_id;

            -- Per run × target × scenario: requests, error rate and latency percentiles in
            -- milliseconds, from the raw rows of the whole fleet. sched_* are measured from the
            -- intended send time (the user's view, free of coordinated omission). Warm-up and cool-down samples are
            -- excluded; latency percentiles are over successful requests; inter-token latency is
            -- over every gap of every request (pooled), not per-request means.
            CREATE VIEW latency_summary AS
            WITH requests AS (
                SELECT run_id, target, scenario,
                       count(*) AS requests,
                       count(*) FILTER (WHERE error_class <> 'none') AS errors,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99]) WITHIN GROUP (ORDER BY ttft_us)
                           FILTER (WHERE error_class = 'none') AS ttft,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99]) WITHIN GROUP (ORDER BY e2e_us)
                           FILTER (WHERE error_class = 'none') AS e2e,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99]) WITHIN GROUP (ORDER BY tpot_us)
                           FILTER (WHERE error_class = 'none') AS tpot,
                       percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY ttft_us + send_lag_us)
                           FILTER (WHERE error_class = 'none') AS sched_ttft,
                       percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY e2e_us + send_lag_us)
                           FILTER (WHERE error_class = 'none') AS sched_e2e,
                       sum(output_tokens) FILTER (WHERE error_class = 'none') AS output_tokens
                FROM request_samples
                WHERE NOT excluded
                GROUP BY run_id, target, scenario
            ), gaps AS (
                SELECT run_id, target, scenario,
                       count(*) AS gaps,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99]) WITHIN GROUP (ORDER BY gap) AS itl
                FROM request_samples, unnest(itl_us) AS gap
                WHERE NOT excluded AND error_class = 'none'
                GROUP BY run_id, target, scenario
            )
            SELECT r.run_id, r.target, r.scenario, r.requests, r.errors,
                   round(r.errors::numeric / r.requests, 4) AS error_rate,
                   r.ttft[1] / 1000 AS ttft_p50_ms, r.ttft[2] / 1000 AS ttft_p90_ms,
                   r.ttft[3] / 1000 AS ttft_p95_ms, r.ttft[4] / 1000 AS ttft_p99_ms,
                   g.itl[1] / 1000 AS itl_p50_ms, g.itl[2] / 1000 AS itl_p90_ms,
                   g.itl[3] / 1000 AS itl_p95_ms, g.itl[4] / 1000 AS itl_p99_ms,
                   r.tpot[1] / 1000 AS tpot_p50_ms, r.tpot[4] / 1000 AS tpot_p99_ms,
                   r.e2e[1] / 1000 AS e2e_p50_ms, r.e2e[2] / 1000 AS e2e_p90_ms,
                   r.e2e[3] / 1000 AS e2e_p95_ms, r.e2e[4] / 1000 AS e2e_p99_ms,
                   r.sched_ttft[1] / 1000 AS sched_ttft_p50_ms, r.sched_ttft[2] / 1000 AS sched_ttft_p99_ms,
                   r.sched_e2e[1] / 1000 AS sched_e2e_p50_ms, r.sched_e2e[2] / 1000 AS sched_e2e_p99_ms,
                   r.output_tokens
            FROM requests r
            LEFT JOIN gaps g USING (run_id, target, scenario);
            """),
        Migration(version: 2, name: "matrix cells, sessions, pricing, SLO goodput", sql: """
            ALTER TABLE samples ADD COLUMN turn_index int NOT NULL DEFAULT 0;
            ALTER TABLE targets
                ADD COLUMN price_input_per_m  double precision,
                ADD COLUMN price_output_per_m double precision,
                ADD COLUMN gpu_hour_usd       double precision,
                ADD COLUMN gpus               int,
                ADD COLUMN quality            double precision;
            ALTER TABLE cells
                ADD COLUMN prompt_tokens int,
                ADD COLUMN output_tokens int,
                ADD COLUMN concurrency   int,
                ADD COLUMN rate          double precision;
            ALTER TABLE runs
                ADD COLUMN slo_ttft_p99_ms double precision,
                ADD COLUMN slo_tpot_p99_ms double precision,
                ADD COLUMN slo_itl_p99_ms  double precision,
                ADD COLUMN slo_e2e_p99_ms  double precision,
                ADD COLUMN slo_error_rate  double precision;

            DROP VIEW latency_summary;
            DROP VIEW request_samples;

            -- Every sample with its labels. meets_slo: the request succeeded and its own TTFT,
            -- TPOT and end-to-end latency are within the run's SLO thresholds (goodput).
            CREATE VIEW request_samples AS
            SELECT s.*, r.name AS run_name, t.name AS target, c.name AS cell, c.scenario,
                   c.prompt_tokens AS cell_prompt_tokens, c.output_tokens AS cell_output_tokens,
                   c.concurrency AS cell_concurrency, c.rate AS cell_rate,
                   a.name AS agent, a.region,
                   x.tpot_us,
                   s.error_class = 'none'
                       AND (r.slo_ttft_p99_ms IS NULL OR s.ttft_us <= r.slo_ttft_p99_ms * 1000)
                       AND (r.slo_tpot_p99_ms IS NULL OR coalesce(x.tpot_us, 0) <= r.slo_tpot_p99_ms * 1000)
                       AND (r.slo_e2e_p99_ms IS NULL OR s.e2e_us <= r.slo_e2e_p99_ms * 1000) AS meets_slo
            FROM samples s
            CROSS JOIN LATERAL (
                SELECT CASE WHEN s.output_tokens >= 2 AND s.ttft_us IS NOT NULL
                            THEN (s.e2e_us - s.ttft_us)::double precision / (s.output_tokens - 1) END AS tpot_us
            ) x
            JOIN runs r ON r.id = s.run_id
            JOIN cells c ON c.run_id = s.run_id AND c.cell_index = s.cell_index
            JOIN targets t ON t.run_id = s.run_id AND t.target_index = c.target_index
            JOIN shards sh ON sh.run_id = s.run_id AND sh.shard_index = s.shard_index
            JOIN agents a ON a.id = sh.agent_id;

            -- Per run × cell (target × scenario × matrix values): requests, error rate, latency
            -- percentiles in milliseconds from the raw rows of the whole fleet, throughput and
            -- goodput. sched_* are measured from the intended send time (the user's view, free of
            -- coordinated omission). Warm-up and cool-down samples are excluded; latency
            -- percentiles are over successful requests; inter-token latency is over every gap of
            -- every request (pooled), not per-request means. Rates are per second of the cell's
            -- measured window (first send to last completion of its included requests).
            CREATE VIEW latency_summary AS
            WITH requests AS (
                SELECT run_id, cell_index,
                       count(*) AS requests,
                       count(*) FILTER (WHERE error_class <> 'none') AS errors,
                       count(*) FILTER (WHERE meets_slo) AS good,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY ttft_us)
                           FILTER (WHERE error_class = 'none') AS ttft,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY e2e_us)
                           FILTER (WHERE error_class = 'none') AS e2e,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY tpot_us)
                           FILTER (WHERE error_class = 'none') AS tpot,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY ttft_us + send_lag_us)
                           FILTER (WHERE error_class = 'none') AS sched_ttft,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY e2e_us + send_lag_us)
                           FILTER (WHERE error_class = 'none') AS sched_e2e,
                       sum(output_tokens) FILTER (WHERE error_class = 'none') AS output_tokens,
                       sum(prompt_tokens) FILTER (WHERE error_class = 'none') AS prompt_tokens,
                       sum(cached_tokens) FILTER (WHERE error_class = 'none' AND cached_tokens >= 0) AS cached_tokens,
                       sum(prompt_tokens) FILTER (WHERE error_class = 'none' AND cached_tokens >= 0) AS cacheable_tokens,
                       extract(epoch FROM max(sent_at + e2e_us * interval '1 microsecond') - min(sent_at)) AS window_s
                FROM request_samples
                WHERE NOT excluded
                GROUP BY run_id, cell_index
            ), gaps AS (
                SELECT run_id, cell_index,
                       count(*) AS gaps,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY gap) AS itl
                FROM request_samples, unnest(itl_us) AS gap
                WHERE NOT excluded AND error_class = 'none'
                GROUP BY run_id, cell_index
            )
            SELECT r.run_id, t.name AS target, c.scenario, c.name AS cell, c.cell_index,
                   c.prompt_tokens AS cell_prompt_tokens, c.output_tokens AS cell_output_tokens,
                   c.concurrency AS cell_concurrency, c.rate AS cell_rate,
                   r.requests, r.errors,
                   round(r.errors::numeric / r.requests, 4) AS error_rate,
                   r.ttft[1] / 1000 AS ttft_p50_ms, r.ttft[2] / 1000 AS ttft_p90_ms,
                   r.ttft[3] / 1000 AS ttft_p95_ms, r.ttft[4] / 1000 AS ttft_p99_ms, r.ttft[5] / 1000 AS ttft_p999_ms,
                   g.itl[1] / 1000 AS itl_p50_ms, g.itl[2] / 1000 AS itl_p90_ms,
                   g.itl[3] / 1000 AS itl_p95_ms, g.itl[4] / 1000 AS itl_p99_ms, g.itl[5] / 1000 AS itl_p999_ms,
                   r.tpot[1] / 1000 AS tpot_p50_ms, r.tpot[2] / 1000 AS tpot_p90_ms,
                   r.tpot[3] / 1000 AS tpot_p95_ms, r.tpot[4] / 1000 AS tpot_p99_ms, r.tpot[5] / 1000 AS tpot_p999_ms,
                   r.e2e[1] / 1000 AS e2e_p50_ms, r.e2e[2] / 1000 AS e2e_p90_ms,
                   r.e2e[3] / 1000 AS e2e_p95_ms, r.e2e[4] / 1000 AS e2e_p99_ms, r.e2e[5] / 1000 AS e2e_p999_ms,
                   r.sched_ttft[1] / 1000 AS sched_ttft_p50_ms, r.sched_ttft[4] / 1000 AS sched_ttft_p99_ms,
                   r.sched_e2e[1] / 1000 AS sched_e2e_p50_ms, r.sched_e2e[4] / 1000 AS sched_e2e_p99_ms,
                   r.output_tokens,
                   r.window_s,
                   (r.requests - r.errors) / nullif(r.window_s, 0) AS throughput_rps,
                   r.output_tokens / nullif(r.window_s, 0) AS output_tok_s,
                   r.good / nullif(r.window_s, 0) AS goodput_rps,
                   round(r.good::numeric / r.requests, 4) AS slo_attainment,
                   r.cached_tokens::double precision / nullif(r.cacheable_tokens, 0) AS cache_hit_rate,
                   CASE WHEN t.price_input_per_m IS NOT NULL
                        THEN (r.prompt_tokens * t.price_input_per_m + r.output_tokens * t.price_output_per_m) / nullif(r.output_tokens, 0)
                        WHEN t.gpu_hour_usd IS NOT NULL
                        THEN t.gpu_hour_usd * t.gpus * r.window_s / 3600 / nullif(r.output_tokens, 0) * 1e6
                   END AS usd_per_m_output_tokens,
                   t.quality,
                   r.sched_ttft[2] / 1000 AS sched_ttft_p90_ms, r.sched_ttft[3] / 1000 AS sched_ttft_p95_ms,
                   r.sched_ttft[5] / 1000 AS sched_ttft_p999_ms,
                   r.sched_e2e[2] / 1000 AS sched_e2e_p90_ms, r.sched_e2e[3] / 1000 AS sched_e2e_p95_ms,
                   r.sched_e2e[5] / 1000 AS sched_e2e_p999_ms
            FROM requests r
            LEFT JOIN gaps g USING (run_id, cell_index)
            JOIN cells c ON c.run_id = r.run_id AND c.cell_index = r.cell_index
            JOIN targets t ON t.run_id = r.run_id AND t.target_index = c.target_index;
            """),
        Migration(version: 3, name: "prompt calibrations", sql: """
            -- What each agent's probes taught it about a target's tokenizer: prompt tokens per
            -- synthetic word, and the tokens every request carries (its chat template).
            CREATE TABLE calibrations (
                run_id          bigint NOT NULL,
                shard_index     int NOT NULL,
                target_index    int NOT NULL,
                tokens_per_word double precision NOT NULL,
                overhead_tokens double precision NOT NULL,
                problem         text,
                PRIMARY KEY (run_id, shard_index, target_index),
                FOREIGN KEY (run_id, shard_index) REFERENCES shards ON DELETE CASCADE
            );
            """),
        Migration(version: 4, name: "run events, analyst role, analysis views", sql: """
            -- What happened to a run, in order: started, agent lost, load reassigned, shard done,
            -- each SLO verdict, finished.
            CREATE TABLE run_events (
                id          bigserial PRIMARY KEY,
                run_id      bigint NOT NULL REFERENCES runs ON DELETE CASCADE,
                at          timestamptz NOT NULL DEFAULT clock_timestamp(),
                kind        text NOT NULL CHECK (kind IN ('run_started', 'agent_lost', 'load_reassigned', 'shard_done',
                                                          'slo_verdict', 'run_finished')),
                shard_index int,
                detail      text NOT NULL DEFAULT ''
            );
            CREATE INDEX run_events_run ON run_events (run_id, at);
            ALTER TABLE cells ADD COLUMN cache_bust boolean NOT NULL DEFAULT false;

            -- loadstar_reader: read-only access for analysts (GRANT loadstar_reader TO someone).
            -- Skipped with a notice where the database user may not create roles.
            DO $$
            BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'loadstar_reader') THEN
                    CREATE ROLE loadstar_reader NOLOGIN;
                END IF;
                EXECUTE format('GRANT CONNECT ON DATABASE %I TO loadstar_reader', current_database());
                GRANT USAGE ON SCHEMA public TO loadstar_reader;
                GRANT SELECT ON ALL TABLES IN SCHEMA public TO loadstar_reader;
                ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO loadstar_reader;
            EXCEPTION WHEN insufficient_privilege THEN
                RAISE NOTICE 'loadstar_reader not created: %', SQLERRM;
            END
            $$;

            -- Per run × cell × region (the agents' region): p50, p90, p95, p99, p99.9 of that
            -- region's TTFT, TPOT and end-to-end latency, and p99 from the intended send, in ms.
            CREATE VIEW latency_by_region AS
            WITH p AS (
                SELECT run_id, target, scenario, cell, cell_index, region,
                       count(*) AS requests,
                       count(*) FILTER (WHERE error_class <> 'none') AS errors,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY ttft_us) FILTER (WHERE error_class = 'none') AS ttft,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY tpot_us) FILTER (WHERE error_class = 'none') AS tpot,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY e2e_us) FILTER (WHERE error_class = 'none') AS e2e,
                       percentile_cont(0.99) WITHIN GROUP (ORDER BY e2e_us + send_lag_us) FILTER (WHERE error_class = 'none') AS sched_e2e_p99
                FROM request_samples
                WHERE NOT excluded
                GROUP BY run_id, target, scenario, cell, cell_index, region
            )
            SELECT run_id, target, scenario, cell, cell_index, region, requests, errors,
                   ttft[1] / 1000 AS ttft_p50_ms, ttft[2] / 1000 AS ttft_p90_ms, ttft[3] / 1000 AS ttft_p95_ms,
                   ttft[4] / 1000 AS ttft_p99_ms, ttft[5] / 1000 AS ttft_p999_ms,
                   tpot[1] / 1000 AS tpot_p50_ms, tpot[2] / 1000 AS tpot_p90_ms, tpot[3] / 1000 AS tpot_p95_ms,
                   tpot[4] / 1000 AS tpot_p99_ms, tpot[5] / 1000 AS tpot_p999_ms,
                   e2e[1] / 1000 AS e2e_p50_ms, e2e[2] / 1000 AS e2e_p90_ms, e2e[3] / 1000 AS e2e_p95_ms,
                   e2e[4] / 1000 AS e2e_p99_ms, e2e[5] / 1000 AS e2e_p999_ms,
                   sched_e2e_p99 / 1000 AS sched_e2e_p99_ms
            FROM p;

            -- Per run × cell × second of completion: throughput, goodput and latency over time.
            CREATE VIEW timeseries AS
            SELECT run_id, cell, cell_index,
                   date_trunc('second', sent_at + e2e_us * interval '1 microsecond') AS second,
                   count(*) AS completed,
                   count(*) FILTER (WHERE error_class <> 'none') AS errors,
                   count(*) FILTER (WHERE meets_slo) AS good,
                   coalesce(sum(output_tokens) FILTER (WHERE error_class = 'none'), 0) AS output_tokens,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY ttft_us) FILTER (WHERE error_class = 'none') / 1000 AS ttft_p50_ms,
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY ttft_us) FILTER (WHERE error_class = 'none') / 1000 AS ttft_p99_ms,
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY e2e_us) FILTER (WHERE error_class = 'none') / 1000 AS e2e_p99_ms
            FROM request_samples
            WHERE e2e_us IS NOT NULL
            GROUP BY run_id, cell, cell_index, second;

            -- Per run × cell × error class and HTTP status: how many, what share, one example.
            CREATE VIEW error_breakdown AS
            SELECT run_id, cell, cell_index, error_class, http_status,
                   count(*) AS requests,
                   round(count(*)::numeric / sum(count(*)) OVER (PARTITION BY run_id, cell_index), 4) AS share,
                   min(error_detail) AS example
            FROM request_samples
            WHERE NOT excluded
            GROUP BY run_id, cell, cell_index, error_class, http_status;

            -- Cold (the first request of a new connection, or a cache-busted workload) against warm.
            CREATE VIEW cold_warm AS
            SELECT run_id, cell, cell_index,
                   CASE WHEN NOT connection_reused OR c2.cache_bust THEN 'cold' ELSE 'warm' END AS temperature,
                   count(*) AS requests,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY ttft_us) / 1000 AS ttft_p50_ms,
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY ttft_us) / 1000 AS ttft_p99_ms,
                   avg(coalesce(cached_tokens, 0)) AS cached_tokens_mean
            FROM request_samples rs
            JOIN cells c2 USING (run_id, cell_index)
            WHERE NOT excluded AND error_class = 'none'
            GROUP BY run_id, cell, cell_index, temperature;

            -- Why per-agent percentiles must not be averaged: the exact p99 over the fleet's raw
            -- rows beside the mean (and spread) of each agent's own p99.
            CREATE VIEW agent_vs_global AS
            WITH per_agent AS (
                SELECT run_id, cell_index, shard_index,
                       percentile_cont(0.99) WITHIN GROUP (ORDER BY ttft_us) AS ttft_p99,
                       percentile_cont(0.99) WITHIN GROUP (ORDER BY e2e_us) AS e2e_p99
                FROM samples
                WHERE NOT excluded AND error_class = 'none'
                GROUP BY run_id, cell_index, shard_index
            ), global AS (
                SELECT run_id, cell_index,
                       percentile_cont(0.99) WITHIN GROUP (ORDER BY ttft_us) AS ttft_p99,
                       percentile_cont(0.99) WITHIN GROUP (ORDER BY e2e_us) AS e2e_p99
                FROM samples
                WHERE NOT excluded AND error_class = 'none'
                GROUP BY run_id, cell_index
            )
            SELECT g.run_id, c.name AS cell, g.cell_index, count(*) AS agents,
                   g.ttft_p99 / 1000 AS ttft_p99_global_ms, avg(a.ttft_p99) / 1000 AS ttft_p99_agent_mean_ms,
                   min(a.ttft_p99) / 1000 AS ttft_p99_agent_min_ms, max(a.ttft_p99) / 1000 AS ttft_p99_agent_max_ms,
                   g.e2e_p99 / 1000 AS e2e_p99_global_ms, avg(a.e2e_p99) / 1000 AS e2e_p99_agent_mean_ms
            FROM global g
            JOIN per_agent a USING (run_id, cell_index)
            JOIN cells c ON c.run_id = g.run_id AND c.cell_index = g.cell_index
            GROUP BY g.run_id, c.name, g.cell_index, g.ttft_p99, g.e2e_p99;

            -- Views made after the grant above are covered by its default privileges only for
            -- tables; grant them explicitly.
            DO $$
            BEGIN
                GRANT SELECT ON latency_by_region, timeseries, error_breakdown, cold_warm, agent_vs_global TO loadstar_reader;
            EXCEPTION WHEN undefined_object OR insufficient_privilege THEN
                RAISE NOTICE 'views not granted to loadstar_reader: %', SQLERRM;
            END
            $$;
            """),
        Migration(version: 5, name: "results materialized when a run ends", sql: """
            -- When a run ends the coordinator stores what the views compute for it in these
            -- *_done tables (same columns as the views), so that reports over millions of samples
            -- read a few rows instead of recomputing percentiles; runs.results_materialized_at
            -- says when. The views stay the live path (and the truth for runs still going).
            ALTER TABLE runs ADD COLUMN results_materialized_at timestamptz;
            CREATE TABLE latency_summary_done AS SELECT * FROM latency_summary WITH NO DATA;
            CREATE INDEX latency_summary_done_run ON latency_summary_done (run_id);
            CREATE TABLE latency_by_region_done AS SELECT * FROM latency_by_region WITH NO DATA;
            CREATE INDEX latency_by_region_done_run ON latency_by_region_done (run_id);
            CREATE TABLE timeseries_done AS SELECT * FROM timeseries WITH NO DATA;
            CREATE INDEX timeseries_done_run ON timeseries_done (run_id);
            CREATE TABLE error_breakdown_done AS SELECT * FROM error_breakdown WITH NO DATA;
            CREATE INDEX error_breakdown_done_run ON error_breakdown_done (run_id);
            CREATE TABLE cold_warm_done AS SELECT * FROM cold_warm WITH NO DATA;
            CREATE INDEX cold_warm_done_run ON cold_warm_done (run_id);
            CREATE TABLE agent_vs_global_done AS SELECT * FROM agent_vs_global WITH NO DATA;
            CREATE INDEX agent_vs_global_done_run ON agent_vs_global_done (run_id);
            CREATE TABLE ttft_cdf_done (
                run_id      bigint NOT NULL,
                cell_index  int NOT NULL,
                cell        text NOT NULL,
                fractions   double precision[] NOT NULL,
                ttft_ms     double precision[] NOT NULL,
                PRIMARY KEY (run_id, cell_index)
            );
            CREATE TABLE prompt_calibration_done (
                run_id          bigint NOT NULL,
                target_index    int NOT NULL,
                target          text NOT NULL,
                requests        bigint NOT NULL,
                requested_mean  double precision,
                reported_mean   double precision,
                error_mean      double precision,
                PRIMARY KEY (run_id, target_index)
            );
            CREATE TABLE cell_prompt_done (
                run_id          bigint NOT NULL,
                cell_index      int NOT NULL,
                requested_mean  double precision,
                PRIMARY KEY (run_id, cell_index)
            );
            DO $$
            BEGIN
                GRANT SELECT ON latency_summary_done, latency_by_region_done, timeseries_done, error_breakdown_done, cold_warm_done, agent_vs_global_done, ttft_cdf_done, prompt_calibration_done, cell_prompt_done
                    TO loadstar_reader;
            EXCEPTION WHEN undefined_object OR insufficient_privilege THEN
                RAISE NOTICE 'results tables not granted to loadstar_reader: %', SQLERRM;
            END
            $$;
            """),
        Migration(version: 6, name: "agent registry state", sql: """
            -- The coordinator's registry, kept current: whether each agent is connected now, and
            -- its clock offset (agent minus coordinator) with the probe round trip it came from.
            ALTER TABLE agents
                ADD COLUMN connected       boolean NOT NULL DEFAULT false,
                ADD COLUMN clock_offset_us bigint,
                ADD COLUMN clock_rtt_us    bigint;
            """),
        Migration(version: 7, name: "run ownership", sql: """
            -- The coordinator that runs a run (its --id, by default host:port): a coordinator that
            -- restarts picks up its runs still marked running and sees them to the end.
            ALTER TABLE runs ADD COLUMN coordinator_id text;
            """),
        Migration(version: 8, name: "agent reachability events", sql: """
            -- agent_unreachable: an agent of a running shard went silent (no frame for 3 s) or its
            -- link closed; agent_back: it was heard from again before being declared lost.
            ALTER TABLE run_events DROP CONSTRAINT run_events_kind_check;
            ALTER TABLE run_events ADD CONSTRAINT run_events_kind_check CHECK (kind IN (
                'run_started', 'agent_unreachable', 'agent_back', 'agent_lost', 'load_reassigned', 'shard_done',
                'slo_verdict', 'run_finished'));
            """),
        Migration(version: 9, name: "shard secrets", sql: """
            -- SHA-256 of the secret each shard assignment carried: an agent that reconnects (to this
            -- coordinator or to one restarted with its identity) proves with it that a shard is its
            -- own before its batches are accepted. The secret itself is never stored.
            ALTER TABLE shards ADD COLUMN secret_sha256 bytea;
            -- shard_refused: an agent refused its shard (it failed the agent's plan validation).
            ALTER TABLE run_events DROP CONSTRAINT run_events_kind_check;
            ALTER TABLE run_events ADD CONSTRAINT run_events_kind_check CHECK (kind IN (
                'run_started', 'agent_unreachable', 'agent_back', 'agent_lost', 'load_reassigned', 'shard_done',
                'slo_verdict', 'run_finished', 'shard_refused'));
            """),
        Migration(version: 10, name: "schema of migrations 1, 2 and 4 as documented, on databases made with their first SQL", sql: """
            -- Migrations 1, 2 and 4 were edited after they had shipped. A database created with their
            -- first SQL lacks samples.server_request_id, and its request_samples, latency_summary and
            -- latency_by_region views, and the *_done tables copied from those views, have older
            -- columns. This brings any database to the schema docs/sql.md describes; on one created with
            -- the current SQL it changes nothing. The views are dropped and created again (a view of
            -- your own on request_samples makes this fail: drop it first); a *_done table whose columns
            -- differ from its view's is rebuilt with the view's, keeping its rows (the new columns
            -- empty) and clearing results_materialized_at of their runs, so that reports compute those
            -- runs from the samples until `loadstar report --refresh` stores them again.
            ALTER TABLE samples ADD COLUMN IF NOT EXISTS server_request_id text;

            DROP VIEW IF EXISTS latency_summary, latency_by_region, timeseries, error_breakdown, cold_warm;
            DROP VIEW IF EXISTS request_samples;

            -- Every sample with its labels (the columns of samples named, in the order of a database
            -- created with the current schema, rather than s.*: an upgraded database added
            -- server_request_id after turn_index). meets_slo: the request succeeded and its own TTFT,
            -- TPOT and end-to-end latency are within the run's SLO thresholds (goodput).
            CREATE VIEW request_samples AS
            SELECT s.run_id, s.shard_index, s.batch_seq, s.request_index, s.cell_index, s.stage_index, s.user_index,
                   s.intended_at, s.sent_at, s.send_lag_us, s.ttfb_us, s.ttft_us, s.e2e_us, s.dns_us, s.connect_us, s.tls_us,
                   s.prompt_tokens_requested, s.prompt_tokens, s.output_tokens, s.output_tokens_estimated,
                   s.cached_tokens, s.http_status, s.error_class, s.error_detail, s.connection_reused, s.excluded,
                   s.itl_us, s.server_request_id, s.turn_index,
                   r.name AS run_name, t.name AS target, c.name AS cell, c.scenario,
                   c.prompt_tokens AS cell_prompt_tokens, c.output_tokens AS cell_output_tokens,
                   c.concurrency AS cell_concurrency, c.rate AS cell_rate,
                   a.name AS agent, a.region,
                   x.tpot_us,
                   s.error_class = 'none'
                       AND (r.slo_ttft_p99_ms IS NULL OR s.ttft_us <= r.slo_ttft_p99_ms * 1000)
                       AND (r.slo_tpot_p99_ms IS NULL OR coalesce(x.tpot_us, 0) <= r.slo_tpot_p99_ms * 1000)
                       AND (r.slo_e2e_p99_ms IS NULL OR s.e2e_us <= r.slo_e2e_p99_ms * 1000) AS meets_slo
            FROM samples s
            CROSS JOIN LATERAL (
                SELECT CASE WHEN s.output_tokens >= 2 AND s.ttft_us IS NOT NULL
                            THEN (s.e2e_us - s.ttft_us)::double precision / (s.output_tokens - 1) END AS tpot_us
            ) x
            JOIN runs r ON r.id = s.run_id
            JOIN cells c ON c.run_id = s.run_id AND c.cell_index = s.cell_index
            JOIN targets t ON t.run_id = s.run_id AND t.target_index = c.target_index
            JOIN shards sh ON sh.run_id = s.run_id AND sh.shard_index = s.shard_index
            JOIN agents a ON a.id = sh.agent_id;

            -- Per run × cell (target × scenario × matrix values): requests, error rate, latency
            -- percentiles in milliseconds from the raw rows of the whole fleet, throughput and
            -- goodput. sched_* are measured from the intended send time (the user's view, free of
            -- coordinated omission). Warm-up and cool-down samples are excluded; latency
            -- percentiles are over successful requests; inter-token latency is over every gap of
            -- every request (pooled), not per-request means. Rates are per second of the cell's
            -- measured window (first send to last completion of its included requests).
            CREATE VIEW latency_summary AS
            WITH requests AS (
                SELECT run_id, cell_index,
                       count(*) AS requests,
                       count(*) FILTER (WHERE error_class <> 'none') AS errors,
                       count(*) FILTER (WHERE meets_slo) AS good,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY ttft_us)
                           FILTER (WHERE error_class = 'none') AS ttft,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY e2e_us)
                           FILTER (WHERE error_class = 'none') AS e2e,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY tpot_us)
                           FILTER (WHERE error_class = 'none') AS tpot,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY ttft_us + send_lag_us)
                           FILTER (WHERE error_class = 'none') AS sched_ttft,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY e2e_us + send_lag_us)
                           FILTER (WHERE error_class = 'none') AS sched_e2e,
                       sum(output_tokens) FILTER (WHERE error_class = 'none') AS output_tokens,
                       sum(prompt_tokens) FILTER (WHERE error_class = 'none') AS prompt_tokens,
                       sum(cached_tokens) FILTER (WHERE error_class = 'none' AND cached_tokens >= 0) AS cached_tokens,
                       sum(prompt_tokens) FILTER (WHERE error_class = 'none' AND cached_tokens >= 0) AS cacheable_tokens,
                       extract(epoch FROM max(sent_at + e2e_us * interval '1 microsecond') - min(sent_at)) AS window_s
                FROM request_samples
                WHERE NOT excluded
                GROUP BY run_id, cell_index
            ), gaps AS (
                SELECT run_id, cell_index,
                       count(*) AS gaps,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY gap) AS itl
                FROM request_samples, unnest(itl_us) AS gap
                WHERE NOT excluded AND error_class = 'none'
                GROUP BY run_id, cell_index
            )
            SELECT r.run_id, t.name AS target, c.scenario, c.name AS cell, c.cell_index,
                   c.prompt_tokens AS cell_prompt_tokens, c.output_tokens AS cell_output_tokens,
                   c.concurrency AS cell_concurrency, c.rate AS cell_rate,
                   r.requests, r.errors,
                   round(r.errors::numeric / r.requests, 4) AS error_rate,
                   r.ttft[1] / 1000 AS ttft_p50_ms, r.ttft[2] / 1000 AS ttft_p90_ms,
                   r.ttft[3] / 1000 AS ttft_p95_ms, r.ttft[4] / 1000 AS ttft_p99_ms, r.ttft[5] / 1000 AS ttft_p999_ms,
                   g.itl[1] / 1000 AS itl_p50_ms, g.itl[2] / 1000 AS itl_p90_ms,
                   g.itl[3] / 1000 AS itl_p95_ms, g.itl[4] / 1000 AS itl_p99_ms, g.itl[5] / 1000 AS itl_p999_ms,
                   r.tpot[1] / 1000 AS tpot_p50_ms, r.tpot[2] / 1000 AS tpot_p90_ms,
                   r.tpot[3] / 1000 AS tpot_p95_ms, r.tpot[4] / 1000 AS tpot_p99_ms, r.tpot[5] / 1000 AS tpot_p999_ms,
                   r.e2e[1] / 1000 AS e2e_p50_ms, r.e2e[2] / 1000 AS e2e_p90_ms,
                   r.e2e[3] / 1000 AS e2e_p95_ms, r.e2e[4] / 1000 AS e2e_p99_ms, r.e2e[5] / 1000 AS e2e_p999_ms,
                   r.sched_ttft[1] / 1000 AS sched_ttft_p50_ms, r.sched_ttft[4] / 1000 AS sched_ttft_p99_ms,
                   r.sched_e2e[1] / 1000 AS sched_e2e_p50_ms, r.sched_e2e[4] / 1000 AS sched_e2e_p99_ms,
                   r.output_tokens,
                   r.window_s,
                   (r.requests - r.errors) / nullif(r.window_s, 0) AS throughput_rps,
                   r.output_tokens / nullif(r.window_s, 0) AS output_tok_s,
                   r.good / nullif(r.window_s, 0) AS goodput_rps,
                   round(r.good::numeric / r.requests, 4) AS slo_attainment,
                   r.cached_tokens::double precision / nullif(r.cacheable_tokens, 0) AS cache_hit_rate,
                   CASE WHEN t.price_input_per_m IS NOT NULL
                        THEN (r.prompt_tokens * t.price_input_per_m + r.output_tokens * t.price_output_per_m) / nullif(r.output_tokens, 0)
                        WHEN t.gpu_hour_usd IS NOT NULL
                        THEN t.gpu_hour_usd * t.gpus * r.window_s / 3600 / nullif(r.output_tokens, 0) * 1e6
                   END AS usd_per_m_output_tokens,
                   t.quality,
                   r.sched_ttft[2] / 1000 AS sched_ttft_p90_ms, r.sched_ttft[3] / 1000 AS sched_ttft_p95_ms,
                   r.sched_ttft[5] / 1000 AS sched_ttft_p999_ms,
                   r.sched_e2e[2] / 1000 AS sched_e2e_p90_ms, r.sched_e2e[3] / 1000 AS sched_e2e_p95_ms,
                   r.sched_e2e[5] / 1000 AS sched_e2e_p999_ms
            FROM requests r
            LEFT JOIN gaps g USING (run_id, cell_index)
            JOIN cells c ON c.run_id = r.run_id AND c.cell_index = r.cell_index
            JOIN targets t ON t.run_id = r.run_id AND t.target_index = c.target_index;

            -- Per run × cell × region (the agents' region): p50, p90, p95, p99, p99.9 of that
            -- region's TTFT, TPOT and end-to-end latency, and p99 from the intended send, in ms.
            CREATE VIEW latency_by_region AS
            WITH p AS (
                SELECT run_id, target, scenario, cell, cell_index, region,
                       count(*) AS requests,
                       count(*) FILTER (WHERE error_class <> 'none') AS errors,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY ttft_us) FILTER (WHERE error_class = 'none') AS ttft,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY tpot_us) FILTER (WHERE error_class = 'none') AS tpot,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY e2e_us) FILTER (WHERE error_class = 'none') AS e2e,
                       percentile_cont(0.99) WITHIN GROUP (ORDER BY e2e_us + send_lag_us) FILTER (WHERE error_class = 'none') AS sched_e2e_p99
                FROM request_samples
                WHERE NOT excluded
                GROUP BY run_id, target, scenario, cell, cell_index, region
            )
            SELECT run_id, target, scenario, cell, cell_index, region, requests, errors,
                   ttft[1] / 1000 AS ttft_p50_ms, ttft[2] / 1000 AS ttft_p90_ms, ttft[3] / 1000 AS ttft_p95_ms,
                   ttft[4] / 1000 AS ttft_p99_ms, ttft[5] / 1000 AS ttft_p999_ms,
                   tpot[1] / 1000 AS tpot_p50_ms, tpot[2] / 1000 AS tpot_p90_ms, tpot[3] / 1000 AS tpot_p95_ms,
                   tpot[4] / 1000 AS tpot_p99_ms, tpot[5] / 1000 AS tpot_p999_ms,
                   e2e[1] / 1000 AS e2e_p50_ms, e2e[2] / 1000 AS e2e_p90_ms, e2e[3] / 1000 AS e2e_p95_ms,
                   e2e[4] / 1000 AS e2e_p99_ms, e2e[5] / 1000 AS e2e_p999_ms,
                   sched_e2e_p99 / 1000 AS sched_e2e_p99_ms
            FROM p;

            -- Per run × cell × second of completion: throughput, goodput and latency over time.
            CREATE VIEW timeseries AS
            SELECT run_id, cell, cell_index,
                   date_trunc('second', sent_at + e2e_us * interval '1 microsecond') AS second,
                   count(*) AS completed,
                   count(*) FILTER (WHERE error_class <> 'none') AS errors,
                   count(*) FILTER (WHERE meets_slo) AS good,
                   coalesce(sum(output_tokens) FILTER (WHERE error_class = 'none'), 0) AS output_tokens,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY ttft_us) FILTER (WHERE error_class = 'none') / 1000 AS ttft_p50_ms,
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY ttft_us) FILTER (WHERE error_class = 'none') / 1000 AS ttft_p99_ms,
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY e2e_us) FILTER (WHERE error_class = 'none') / 1000 AS e2e_p99_ms
            FROM request_samples
            WHERE e2e_us IS NOT NULL
            GROUP BY run_id, cell, cell_index, second;

            -- Per run × cell × error class and HTTP status: how many, what share, one example.
            CREATE VIEW error_breakdown AS
            SELECT run_id, cell, cell_index, error_class, http_status,
                   count(*) AS requests,
                   round(count(*)::numeric / sum(count(*)) OVER (PARTITION BY run_id, cell_index), 4) AS share,
                   min(error_detail) AS example
            FROM request_samples
            WHERE NOT excluded
            GROUP BY run_id, cell, cell_index, error_class, http_status;

            -- Cold (the first request of a new connection, or a cache-busted workload) against warm.
            CREATE VIEW cold_warm AS
            SELECT run_id, cell, cell_index,
                   CASE WHEN NOT connection_reused OR c2.cache_bust THEN 'cold' ELSE 'warm' END AS temperature,
                   count(*) AS requests,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY ttft_us) / 1000 AS ttft_p50_ms,
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY ttft_us) / 1000 AS ttft_p99_ms,
                   avg(coalesce(cached_tokens, 0)) AS cached_tokens_mean
            FROM request_samples rs
            JOIN cells c2 USING (run_id, cell_index)
            WHERE NOT excluded AND error_class = 'none'
            GROUP BY run_id, cell, cell_index, temperature;

            DO $$
            DECLARE
                view_name text;
                done_name text;
                kept text;
            BEGIN
                FOREACH view_name IN ARRAY ARRAY['latency_summary', 'latency_by_region', 'timeseries', 'error_breakdown', 'cold_warm',
                                                 'agent_vs_global'] LOOP
                    done_name := view_name || '_done';
                    CONTINUE WHEN (SELECT array_agg(format_type(atttypid, atttypmod) || ' ' || attname ORDER BY attnum)
                                   FROM pg_attribute WHERE attrelid = view_name::regclass AND attnum > 0 AND NOT attisdropped)
                                = (SELECT array_agg(format_type(atttypid, atttypmod) || ' ' || attname ORDER BY attnum)
                                   FROM pg_attribute WHERE attrelid = done_name::regclass AND attnum > 0 AND NOT attisdropped);
                    SELECT string_agg(quote_ident(v.attname), ', ' ORDER BY v.attnum) INTO kept
                    FROM pg_attribute v
                    JOIN pg_attribute d ON d.attrelid = done_name::regclass AND d.attname = v.attname AND d.attnum > 0 AND NOT d.attisdropped
                    WHERE v.attrelid = view_name::regclass AND v.attnum > 0 AND NOT v.attisdropped;
                    EXECUTE format('UPDATE runs SET results_materialized_at = NULL WHERE id IN (SELECT run_id FROM %I)', done_name);
                    EXECUTE format('CREATE TABLE %I AS SELECT * FROM %I WITH NO DATA', done_name || '_new', view_name);
                    EXECUTE format('INSERT INTO %I (%s) SELECT %s FROM %I', done_name || '_new', kept, kept, done_name);
                    EXECUTE format('DROP TABLE %I', done_name);
                    EXECUTE format('ALTER TABLE %I RENAME TO %I', done_name || '_new', done_name);
                    EXECUTE format('CREATE INDEX %I ON %I (run_id)', done_name || '_run', done_name);
                    RAISE NOTICE '% rebuilt with the columns of the view %', done_name, view_name;
                END LOOP;
            END
            $$;

            DO $$
            BEGIN
                GRANT SELECT ON request_samples, latency_summary, latency_by_region, timeseries, error_breakdown, cold_warm,
                                latency_summary_done, latency_by_region_done, timeseries_done, error_breakdown_done, cold_warm_done,
                                agent_vs_global_done
                    TO loadstar_reader;
            EXCEPTION WHEN undefined_object OR insufficient_privilege THEN
                RAISE NOTICE 'views not granted to loadstar_reader: %', SQLERRM;
            END
            $$;
            """),
        Migration(version: 11, name: "run lease", sql: """
            -- The lease of a run's coordinator: while it runs a run it renews coordinator_seen_at every
            -- few seconds and says how long the lease lasts (coordinator_lease_s). Another coordinator
            -- that finds a run still pending or running past its lease closes it (aborted, with the
            -- reason in status_reason and a run_finished event); one started with the run's
            -- coordinator_id resumes it instead. A run from before this migration counts from its start.
            ALTER TABLE runs
                ADD COLUMN coordinator_seen_at timestamptz,
                ADD COLUMN coordinator_lease_s double precision NOT NULL DEFAULT 30;
            ALTER TABLE runs ALTER COLUMN coordinator_seen_at SET DEFAULT now();
            """),
        Migration(version: 12, name: "reasoning: time to first answer token, reasoning tokens", sql: """
            -- ttfo_us: sent_at to the first event carrying answer content or a tool call (reasoning
            -- and thinking text excluded; equals ttft_us when the model does not reason).
            -- reasoning_tokens: from usage.completion_tokens_details.reasoning_tokens, else counted
            -- from reasoning/thinking events (reasoning_tokens_estimated). NULL: none seen or said.
            ALTER TABLE samples
                ADD COLUMN ttfo_us bigint,
                ADD COLUMN reasoning_tokens int,
                ADD COLUMN reasoning_tokens_estimated boolean NOT NULL DEFAULT false;
            """),
        Migration(version: 13, name: "every request counted, client-bound cells, per-request mean gaps, reasoning and prompt error", sql: """
            -- What each agent reports of its own pace, per cell: when the client, not the target,
            -- set the pace, the cell's latencies carry that warning.
            CREATE TABLE cell_client_stats (
                run_id          bigint NOT NULL,
                shard_index     int NOT NULL,
                cell_index      int NOT NULL,
                send_lag_p99_us bigint NOT NULL,
                late            bigint NOT NULL,
                dropped         bigint NOT NULL,
                busy_fraction   double precision NOT NULL,
                PRIMARY KEY (run_id, shard_index, cell_index),
                FOREIGN KEY (run_id, shard_index) REFERENCES shards ON DELETE CASCADE
            );
            -- The plan's thresholds (load.client_bound): send lag p99 in ms, worker busy share.
            ALTER TABLE runs
                ADD COLUMN client_bound_send_lag_ms double precision NOT NULL DEFAULT 10,
                ADD COLUMN client_bound_busy        double precision NOT NULL DEFAULT 0.9;
            -- The output tokens each request asked for (max_tokens), against output_tokens delivered.
            ALTER TABLE samples ADD COLUMN output_tokens_requested int;

            -- request_samples names every column of samples: the ones migrations 12 and 13 added
            -- come at its end (a view's columns can only be appended).
            CREATE OR REPLACE VIEW request_samples AS
            SELECT s.run_id, s.shard_index, s.batch_seq, s.request_index, s.cell_index, s.stage_index, s.user_index,
                   s.intended_at, s.sent_at, s.send_lag_us, s.ttfb_us, s.ttft_us, s.e2e_us, s.dns_us, s.connect_us, s.tls_us,
                   s.prompt_tokens_requested, s.prompt_tokens, s.output_tokens, s.output_tokens_estimated,
                   s.cached_tokens, s.http_status, s.error_class, s.error_detail, s.connection_reused, s.excluded,
                   s.itl_us, s.server_request_id, s.turn_index,
                   r.name AS run_name, t.name AS target, c.name AS cell, c.scenario,
                   c.prompt_tokens AS cell_prompt_tokens, c.output_tokens AS cell_output_tokens,
                   c.concurrency AS cell_concurrency, c.rate AS cell_rate,
                   a.name AS agent, a.region,
                   x.tpot_us,
                   s.error_class = 'none'
                       AND (r.slo_ttft_p99_ms IS NULL OR s.ttft_us <= r.slo_ttft_p99_ms * 1000)
                       AND (r.slo_tpot_p99_ms IS NULL OR coalesce(x.tpot_us, 0) <= r.slo_tpot_p99_ms * 1000)
                       AND (r.slo_e2e_p99_ms IS NULL OR s.e2e_us <= r.slo_e2e_p99_ms * 1000) AS meets_slo,
                   s.ttfo_us, s.reasoning_tokens, s.reasoning_tokens_estimated, s.output_tokens_requested
            FROM samples s
            CROSS JOIN LATERAL (
                SELECT CASE WHEN s.output_tokens >= 2 AND s.ttft_us IS NOT NULL
                            THEN (s.e2e_us - s.ttft_us)::double precision / (s.output_tokens - 1) END AS tpot_us
            ) x
            JOIN runs r ON r.id = s.run_id
            JOIN cells c ON c.run_id = s.run_id AND c.cell_index = s.cell_index
            JOIN targets t ON t.run_id = s.run_id AND t.target_index = c.target_index
            JOIN shards sh ON sh.run_id = s.run_id AND sh.shard_index = s.shard_index
            JOIN agents a ON a.id = sh.agent_id;

            -- Per run × cell: whether an agent set the pace (send lag p99 over the threshold, a
            -- dropped request, or a worker busy over the threshold), and which agents, why.
            CREATE VIEW client_bound_cells AS
            SELECT s.run_id, s.cell_index,
                   bool_or(x.slow OR x.dropping OR x.busy) AS client_bound,
                   string_agg(CASE WHEN x.slow OR x.dropping OR x.busy
                                   THEN 'agent ' || a.name || ' fell behind: ' || concat_ws(', ',
                                        CASE WHEN x.slow THEN 'send lag p99 ' || round(s.send_lag_p99_us / 1000.0, 1) || ' ms' END,
                                        CASE WHEN x.dropping THEN s.dropped || ' dropped' END,
                                        CASE WHEN x.busy THEN 'worker busy ' || round(s.busy_fraction::numeric * 100) || '%' END)
                                        || '; add agents or workers' END, '; ' ORDER BY a.name) AS client_bound_reason
            FROM cell_client_stats s
            JOIN runs r ON r.id = s.run_id
            JOIN shards sh ON sh.run_id = s.run_id AND sh.shard_index = s.shard_index
            JOIN agents a ON a.id = sh.agent_id
            CROSS JOIN LATERAL (
                SELECT s.send_lag_p99_us > r.client_bound_send_lag_ms * 1000 AS slow, s.dropped > 0 AS dropping,
                       s.busy_fraction > r.client_bound_busy AS busy
            ) x
            GROUP BY s.run_id, s.cell_index;

            -- latency_summary gains, at its end: the requests that never completed their course
            -- (dropped, lost, not_sent, cancelled: counted in requests and errors), the client-bound
            -- flag and its reason, percentiles of each request's mean inter-token gap (beside the
            -- pooled itl_*), the share of successful requests whose output count was estimated, and
            -- the output tokens asked for against delivered (means), time to first answer token
            -- (ttfo) percentiles, reasoning duration (ttfo - ttft, over requests that reasoned),
            -- mean reasoning tokens and the share of them counted from events, and the mean
            -- relative prompt error (reported against requested). Percentiles: linear
            -- interpolation between closest ranks (percentile_cont).
            CREATE OR REPLACE VIEW latency_summary AS
            WITH requests AS (
                SELECT run_id, cell_index,
                       count(*) AS requests,
                       count(*) FILTER (WHERE error_class <> 'none') AS errors,
                       count(*) FILTER (WHERE meets_slo) AS good,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY ttft_us)
                           FILTER (WHERE error_class = 'none') AS ttft,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY e2e_us)
                           FILTER (WHERE error_class = 'none') AS e2e,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY tpot_us)
                           FILTER (WHERE error_class = 'none') AS tpot,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY ttft_us + send_lag_us)
                           FILTER (WHERE error_class = 'none') AS sched_ttft,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY e2e_us + send_lag_us)
                           FILTER (WHERE error_class = 'none') AS sched_e2e,
                       sum(output_tokens) FILTER (WHERE error_class = 'none') AS output_tokens,
                       sum(prompt_tokens) FILTER (WHERE error_class = 'none') AS prompt_tokens,
                       sum(cached_tokens) FILTER (WHERE error_class = 'none' AND cached_tokens >= 0) AS cached_tokens,
                       sum(prompt_tokens) FILTER (WHERE error_class = 'none' AND cached_tokens >= 0) AS cacheable_tokens,
                       extract(epoch FROM max(sent_at + e2e_us * interval '1 microsecond') - min(sent_at)) AS window_s
                FROM request_samples
                WHERE NOT excluded
                GROUP BY run_id, cell_index
            ), unfinished AS (
                SELECT run_id, cell_index,
                       count(*) FILTER (WHERE error_class = 'dropped') AS dropped,
                       count(*) FILTER (WHERE error_class = 'lost') AS lost,
                       count(*) FILTER (WHERE error_class = 'not_sent') AS not_sent,
                       count(*) FILTER (WHERE error_class = 'cancelled') AS cancelled,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY mean_gap_us)
                           FILTER (WHERE error_class = 'none') AS itl_mean,
                       count(*) FILTER (WHERE error_class = 'none' AND output_tokens_estimated)::double precision
                           / nullif(count(*) FILTER (WHERE error_class = 'none'), 0) AS output_estimated_share,
                       avg(output_tokens_requested) FILTER (WHERE error_class = 'none') AS output_tokens_requested_mean,
                       avg(output_tokens) FILTER (WHERE error_class = 'none') AS output_tokens_mean,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY ttfo_us)
                           FILTER (WHERE error_class = 'none') AS ttfo,
                       percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY ttfo_us - ttft_us)
                           FILTER (WHERE error_class = 'none' AND ttfo_us > ttft_us) AS reasoning,
                       avg(reasoning_tokens) FILTER (WHERE error_class = 'none' AND reasoning_tokens >= 0) AS reasoning_tokens_mean,
                       count(*) FILTER (WHERE error_class = 'none' AND reasoning_tokens_estimated)::double precision
                           / nullif(count(*) FILTER (WHERE error_class = 'none' AND reasoning_tokens >= 0), 0) AS reasoning_estimated_share,
                       avg(abs(prompt_tokens - prompt_tokens_requested)::double precision / prompt_tokens_requested)
                           FILTER (WHERE error_class = 'none' AND prompt_tokens IS NOT NULL AND prompt_tokens_requested > 0) AS prompt_error_mean
                FROM samples
                CROSS JOIN LATERAL (SELECT avg(g)::double precision AS mean_gap_us FROM unnest(itl_us) AS g) m
                WHERE NOT excluded
                GROUP BY run_id, cell_index
            ), gaps AS (
                SELECT run_id, cell_index,
                       count(*) AS gaps,
                       percentile_cont(ARRAY[0.5, 0.9, 0.95, 0.99, 0.999]) WITHIN GROUP (ORDER BY gap) AS itl
                FROM request_samples, unnest(itl_us) AS gap
                WHERE NOT excluded AND error_class = 'none'
                GROUP BY run_id, cell_index
            )
            SELECT r.run_id, t.name AS target, c.scenario, c.name AS cell, c.cell_index,
                   c.prompt_tokens AS cell_prompt_tokens, c.output_tokens AS cell_output_tokens,
                   c.concurrency AS cell_concurrency, c.rate AS cell_rate,
                   r.requests, r.errors,
                   round(r.errors::numeric / r.requests, 4) AS error_rate,
                   r.ttft[1] / 1000 AS ttft_p50_ms, r.ttft[2] / 1000 AS ttft_p90_ms,
                   r.ttft[3] / 1000 AS ttft_p95_ms, r.ttft[4] / 1000 AS ttft_p99_ms, r.ttft[5] / 1000 AS ttft_p999_ms,
                   g.itl[1] / 1000 AS itl_p50_ms, g.itl[2] / 1000 AS itl_p90_ms,
                   g.itl[3] / 1000 AS itl_p95_ms, g.itl[4] / 1000 AS itl_p99_ms, g.itl[5] / 1000 AS itl_p999_ms,
                   r.tpot[1] / 1000 AS tpot_p50_ms, r.tpot[2] / 1000 AS tpot_p90_ms,
                   r.tpot[3] / 1000 AS tpot_p95_ms, r.tpot[4] / 1000 AS tpot_p99_ms, r.tpot[5] / 1000 AS tpot_p999_ms,
                   r.e2e[1] / 1000 AS e2e_p50_ms, r.e2e[2] / 1000 AS e2e_p90_ms,
                   r.e2e[3] / 1000 AS e2e_p95_ms, r.e2e[4] / 1000 AS e2e_p99_ms, r.e2e[5] / 1000 AS e2e_p999_ms,
                   r.sched_ttft[1] / 1000 AS sched_ttft_p50_ms, r.sched_ttft[4] / 1000 AS sched_ttft_p99_ms,
                   r.sched_e2e[1] / 1000 AS sched_e2e_p50_ms, r.sched_e2e[4] / 1000 AS sched_e2e_p99_ms,
                   r.output_tokens,
                   r.window_s,
                   (r.requests - r.errors) / nullif(r.window_s, 0) AS throughput_rps,
                   r.output_tokens / nullif(r.window_s, 0) AS output_tok_s,
                   r.good / nullif(r.window_s, 0) AS goodput_rps,
                   round(r.good::numeric / r.requests, 4) AS slo_attainment,
                   r.cached_tokens::double precision / nullif(r.cacheable_tokens, 0) AS cache_hit_rate,
                   CASE WHEN t.price_input_per_m IS NOT NULL
                        THEN (r.prompt_tokens * t.price_input_per_m + r.output_tokens * t.price_output_per_m) / nullif(r.output_tokens, 0)
                        WHEN t.gpu_hour_usd IS NOT NULL
                        THEN t.gpu_hour_usd * t.gpus * r.window_s / 3600 / nullif(r.output_tokens, 0) * 1e6
                   END AS usd_per_m_output_tokens,
                   t.quality,
                   r.sched_ttft[2] / 1000 AS sched_ttft_p90_ms, r.sched_ttft[3] / 1000 AS sched_ttft_p95_ms,
                   r.sched_ttft[5] / 1000 AS sched_ttft_p999_ms,
                   r.sched_e2e[2] / 1000 AS sched_e2e_p90_ms, r.sched_e2e[3] / 1000 AS sched_e2e_p95_ms,
                   r.sched_e2e[5] / 1000 AS sched_e2e_p999_ms,
                   u.dropped, u.lost, u.not_sent, u.cancelled,
                   coalesce(b.client_bound, false) OR u.dropped > 0 AS client_bound,
                   concat_ws('; ', b.client_bound_reason,
                             CASE WHEN u.dropped > 0 AND NOT coalesce(b.client_bound, false)
                                  THEN u.dropped || ' request(s) dropped at the in-flight cap' END) AS client_bound_reason,
                   u.itl_mean[1] / 1000 AS itl_mean_p50_ms, u.itl_mean[2] / 1000 AS itl_mean_p90_ms,
                   u.itl_mean[3] / 1000 AS itl_mean_p95_ms, u.itl_mean[4] / 1000 AS itl_mean_p99_ms,
                   u.itl_mean[5] / 1000 AS itl_mean_p999_ms,
                   u.output_estimated_share, u.output_tokens_requested_mean, u.output_tokens_mean,
                   u.ttfo[1] / 1000 AS ttfo_p50_ms, u.ttfo[2] / 1000 AS ttfo_p90_ms, u.ttfo[3] / 1000 AS ttfo_p95_ms,
                   u.ttfo[4] / 1000 AS ttfo_p99_ms, u.ttfo[5] / 1000 AS ttfo_p999_ms,
                   u.reasoning[1] / 1000 AS reasoning_p50_ms, u.reasoning[2] / 1000 AS reasoning_p99_ms,
                   u.reasoning_tokens_mean, u.reasoning_estimated_share, u.prompt_error_mean
            FROM requests r
            LEFT JOIN gaps g USING (run_id, cell_index)
            LEFT JOIN unfinished u USING (run_id, cell_index)
            LEFT JOIN client_bound_cells b USING (run_id, cell_index)
            JOIN cells c ON c.run_id = r.run_id AND c.cell_index = r.cell_index
            JOIN targets t ON t.run_id = r.run_id AND t.target_index = c.target_index;
            ALTER TABLE latency_summary_done
                ADD COLUMN dropped bigint, ADD COLUMN lost bigint, ADD COLUMN not_sent bigint, ADD COLUMN cancelled bigint,
                ADD COLUMN client_bound boolean, ADD COLUMN client_bound_reason text,
                ADD COLUMN itl_mean_p50_ms double precision, ADD COLUMN itl_mean_p90_ms double precision,
                ADD COLUMN itl_mean_p95_ms double precision, ADD COLUMN itl_mean_p99_ms double precision,
                ADD COLUMN itl_mean_p999_ms double precision,
                ADD COLUMN output_estimated_share double precision, ADD COLUMN output_tokens_requested_mean numeric,
                ADD COLUMN output_tokens_mean numeric,
                ADD COLUMN ttfo_p50_ms double precision, ADD COLUMN ttfo_p90_ms double precision, ADD COLUMN ttfo_p95_ms double precision,
                ADD COLUMN ttfo_p99_ms double precision, ADD COLUMN ttfo_p999_ms double precision,
                ADD COLUMN reasoning_p50_ms double precision, ADD COLUMN reasoning_p99_ms double precision,
                ADD COLUMN reasoning_tokens_mean numeric, ADD COLUMN reasoning_estimated_share double precision,
                ADD COLUMN prompt_error_mean double precision;
            DO $$
            BEGIN
                GRANT SELECT ON cell_client_stats, client_bound_cells TO loadstar_reader;
            EXCEPTION WHEN OTHERS THEN
                RAISE NOTICE 'not granted to loadstar_reader: %', SQLERRM;
            END
            $$;
            """),
        Migration(version: 14, name: "server-reported timings per request", sql: """
            -- What the server itself reported about each request, where its stream carried it
            -- (llama.cpp's timings object in the final chunk): prompt tokens it processed (prompt_n,
            -- the cached part excluded), its prefill time (prompt_ms, in µs), tokens it generated
            -- (predicted_n) and their time (predicted_ms, in µs), prompt tokens from its cache
            -- (cache_n). NULL where the stream carried none, or a value the agent did not believe.
            -- Never mixed into the client's figures: ttft_us - server_prompt_us is what the network
            -- and the server's queue added.
            ALTER TABLE samples
                ADD COLUMN server_prompt_tokens int,
                ADD COLUMN server_prompt_us bigint,
                ADD COLUMN server_predicted_tokens int,
                ADD COLUMN server_predicted_us bigint,
                ADD COLUMN server_cached_tokens int;

            -- request_samples gains them at its end (a view's columns can only be appended).
            CREATE OR REPLACE VIEW request_samples AS
            SELECT s.run_id, s.shard_index, s.batch_seq, s.request_index, s.cell_index, s.stage_index, s.user_index,
                   s.intended_at, s.sent_at, s.send_lag_us, s.ttfb_us, s.ttft_us, s.e2e_us, s.dns_us, s.connect_us, s.tls_us,
                   s.prompt_tokens_requested, s.prompt_tokens, s.output_tokens, s.output_tokens_estimated,
                   s.cached_tokens, s.http_status, s.error_class, s.error_detail, s.connection_reused, s.excluded,
                   s.itl_us, s.server_request_id, s.turn_index,
                   r.name AS run_name, t.name AS target, c.name AS cell, c.scenario,
                   c.prompt_tokens AS cell_prompt_tokens, c.output_tokens AS cell_output_tokens,
                   c.concurrency AS cell_concurrency, c.rate AS cell_rate,
                   a.name AS agent, a.region,
                   x.tpot_us,
                   s.error_class = 'none'
                       AND (r.slo_ttft_p99_ms IS NULL OR s.ttft_us <= r.slo_ttft_p99_ms * 1000)
                       AND (r.slo_tpot_p99_ms IS NULL OR coalesce(x.tpot_us, 0) <= r.slo_tpot_p99_ms * 1000)
                       AND (r.slo_e2e_p99_ms IS NULL OR s.e2e_us <= r.slo_e2e_p99_ms * 1000) AS meets_slo,
                   s.ttfo_us, s.reasoning_tokens, s.reasoning_tokens_estimated, s.output_tokens_requested,
                   s.server_prompt_tokens, s.server_prompt_us, s.server_predicted_tokens, s.server_predicted_us, s.server_cached_tokens
            FROM samples s
            CROSS JOIN LATERAL (
                SELECT CASE WHEN s.output_tokens >= 2 AND s.ttft_us IS NOT NULL
                            THEN (s.e2e_us - s.ttft_us)::double precision / (s.output_tokens - 1) END AS tpot_us
            ) x
            JOIN runs r ON r.id = s.run_id
            JOIN cells c ON c.run_id = s.run_id AND c.cell_index = s.cell_index
            JOIN targets t ON t.run_id = s.run_id AND t.target_index = c.target_index
            JOIN shards sh ON sh.run_id = s.run_id AND sh.shard_index = s.shard_index
            JOIN agents a ON a.id = sh.agent_id;
            """),
        Migration(version: 15, name: "capacity search: probes as child runs, capacity_probes and capacity_search", sql: """
            ALTER TABLE runs
                ADD COLUMN search_run_id bigint REFERENCES runs ON DELETE CASCADE,
                ADD COLUMN search_cell_index int,
                ADD COLUMN probe_index int,
                ADD COLUMN probe_rate double precision;
            CREATE INDEX runs_search ON runs (search_run_id, search_cell_index, probe_index) WHERE search_run_id IS NOT NULL;
            CREATE VIEW capacity_probes AS
            SELECT p.search_run_id, p.search_cell_index AS cell_index, c.name AS cell, t.name AS target, c.scenario,
                   c.prompt_tokens AS cell_prompt_tokens, c.output_tokens AS cell_output_tokens,
                   p.probe_index, p.probe_rate, p.id AS probe_run_id, p.status AS probe_status,
                   l.requests, l.errors, l.error_rate, l.ttft_p50_ms, l.ttft_p99_ms, l.tpot_p99_ms, l.itl_p99_ms, l.e2e_p99_ms,
                   l.window_s, l.throughput_rps, l.output_tok_s, l.goodput_rps, l.client_bound,
                   CASE WHEN p.status IN ('pending', 'running') THEN NULL
                        ELSE (p.status IN ('completed', 'partial') AND l.requests > 0
                              AND (p.slo_ttft_p99_ms IS NULL OR l.ttft_p99_ms <= p.slo_ttft_p99_ms)
                              AND (p.slo_tpot_p99_ms IS NULL OR l.tpot_p99_ms <= p.slo_tpot_p99_ms)
                              AND (p.slo_itl_p99_ms IS NULL OR l.itl_p99_ms <= p.slo_itl_p99_ms)
                              AND (p.slo_e2e_p99_ms IS NULL OR l.e2e_p99_ms <= p.slo_e2e_p99_ms)
                              AND (p.slo_error_rate IS NULL OR l.error_rate <= p.slo_error_rate)) IS TRUE
                   END AS meets_slo
            FROM runs p
            JOIN cells c ON c.run_id = p.search_run_id AND c.cell_index = p.search_cell_index
            JOIN targets t ON t.run_id = c.run_id AND t.target_index = c.target_index
            LEFT JOIN LATERAL (
                SELECT run_id, requests, errors, error_rate, ttft_p50_ms, ttft_p99_ms, tpot_p99_ms, itl_p99_ms, e2e_p99_ms, window_s, throughput_rps, output_tok_s, goodput_rps, client_bound FROM latency_summary_done d
                WHERE d.run_id = p.id AND p.results_materialized_at IS NOT NULL
                UNION ALL
                SELECT run_id, requests, errors, error_rate, ttft_p50_ms, ttft_p99_ms, tpot_p99_ms, itl_p99_ms, e2e_p99_ms, window_s, throughput_rps, output_tok_s, goodput_rps, client_bound FROM latency_summary v
                WHERE v.run_id = p.id AND p.results_materialized_at IS NULL
            ) l ON true
            WHERE p.search_run_id IS NOT NULL;
            CREATE VIEW capacity_search AS
            WITH bounds AS (
                SELECT r.id, r.name, (r.plan->'load'->'search'->>'minRate')::float8 AS min_rate,
                       (r.plan->'load'->'search'->>'maxRate')::float8 AS max_rate,
                       (r.plan->'load'->'search'->>'precision')::float8 AS precision
                FROM runs r WHERE r.plan->'load' ? 'search'
            ), found AS (
                SELECT b.id AS search_run_id, b.name AS run_name, c.cell_index, c.name AS cell, t.name AS target, c.scenario,
                       c.prompt_tokens AS cell_prompt_tokens, c.output_tokens AS cell_output_tokens,
                       b.min_rate, b.max_rate, b.precision,
                       count(p.meets_slo) AS probes,
                       max(p.probe_rate) FILTER (WHERE p.meets_slo) AS capacity_rps,
                       min(p.probe_rate) FILTER (WHERE NOT p.meets_slo) AS lowest_failing_rps
                FROM bounds b
                JOIN cells c ON c.run_id = b.id
                JOIN targets t ON t.run_id = c.run_id AND t.target_index = c.target_index
                LEFT JOIN capacity_probes p ON p.search_run_id = b.id AND p.cell_index = c.cell_index
                GROUP BY b.id, b.name, c.cell_index, c.name, t.name, c.scenario, c.prompt_tokens, c.output_tokens, b.min_rate, b.max_rate, b.precision
            )
            SELECT f.*,
                   CASE WHEN f.probes = 0 THEN 'pending'
                        WHEN f.capacity_rps IS NULL THEN 'below_min_rate'
                        WHEN f.lowest_failing_rps IS NULL AND f.capacity_rps >= f.max_rate THEN 'at_max_rate'
                        WHEN f.lowest_failing_rps IS NOT NULL
                             AND (f.lowest_failing_rps - f.capacity_rps) / f.capacity_rps <= f.precision * (1 + 1e-9) THEN 'found'
                        ELSE 'incomplete'
                   END AS outcome
            FROM found f;
            DO $$
            BEGIN
                GRANT SELECT ON capacity_probes, capacity_search TO loadstar_reader;
            EXCEPTION WHEN OTHERS THEN
                RAISE NOTICE 'not granted to loadstar_reader: %', SQLERRM;
            END
            $$;
            """),
        Migration(version: 16, name: "connection phases per cell, repeats, run tags", sql: """
            -- Where the milliseconds went, per run × cell: libcurl's phase times as percentiles, and
            -- connection reuse. A request reused a connection when libcurl opened none for it
            -- (CURLINFO_NUM_CONNECTS = 0: samples.connection_reused; its connect_us is then NULL and
            -- dns_us 0), so DNS, connect and TLS percentiles are over the requests that opened one.
            -- Every request the agent handed to libcurl counts (failed ones too); dropped, lost and
            -- not_sent rows never reached it, and warm-up and cool-down rows are excluded.
            CREATE VIEW connection_phases AS
            SELECT r.run_id, r.cell_index, c.name AS cell, t.name AS target, c.scenario, r.requests, r.new_connections,
                   r.requests - r.new_connections AS reused, (r.requests - r.new_connections)::float8 / nullif(r.requests, 0) AS reuse_share,
                   r.dns[1] / 1000 AS dns_p50_ms, r.dns[2] / 1000 AS dns_p90_ms, r.dns[3] / 1000 AS dns_p99_ms,
                   r.connect[1] / 1000 AS connect_p50_ms, r.connect[2] / 1000 AS connect_p90_ms, r.connect[3] / 1000 AS connect_p99_ms,
                   r.tls[1] / 1000 AS tls_p50_ms, r.tls[2] / 1000 AS tls_p90_ms, r.tls[3] / 1000 AS tls_p99_ms,
                   r.ttfb[1] / 1000 AS ttfb_p50_ms, r.ttfb[2] / 1000 AS ttfb_p90_ms, r.ttfb[3] / 1000 AS ttfb_p99_ms,
                   r.wait[1] / 1000 AS wait_p50_ms, r.wait[2] / 1000 AS wait_p90_ms, r.wait[3] / 1000 AS wait_p99_ms,
                   r.ttft[1] / 1000 AS ttft_p50_ms, r.ttft[2] / 1000 AS ttft_p90_ms, r.ttft[3] / 1000 AS ttft_p99_ms
            FROM (
                SELECT s.run_id, s.cell_index, count(*) AS requests, count(*) FILTER (WHERE NOT s.connection_reused) AS new_connections,
                       percentile_cont('{0.5,0.9,0.99}'::float8[]) WITHIN GROUP (ORDER BY s.dns_us) FILTER (WHERE NOT s.connection_reused) AS dns,
                       percentile_cont('{0.5,0.9,0.99}'::float8[]) WITHIN GROUP (ORDER BY s.connect_us) FILTER (WHERE NOT s.connection_reused) AS connect,
                       percentile_cont('{0.5,0.9,0.99}'::float8[]) WITHIN GROUP (ORDER BY s.tls_us) FILTER (WHERE NOT s.connection_reused) AS tls,
                       percentile_cont('{0.5,0.9,0.99}'::float8[]) WITHIN GROUP (ORDER BY s.ttfb_us) AS ttfb,
                       -- after the handshakes until the first response byte: sending the request and the server's answer
                       percentile_cont('{0.5,0.9,0.99}'::float8[]) WITHIN GROUP (
                           ORDER BY s.ttfb_us - coalesce(s.dns_us, 0) - coalesce(s.connect_us, 0) - coalesce(s.tls_us, 0)) AS wait,
                       percentile_cont('{0.5,0.9,0.99}'::float8[]) WITHIN GROUP (ORDER BY s.ttft_us) FILTER (WHERE s.error_class = 'none') AS ttft
                FROM samples s
                WHERE NOT s.excluded AND s.error_class NOT IN ('dropped', 'lost', 'not_sent')
                GROUP BY s.run_id, s.cell_index
            ) r
            JOIN cells c ON c.run_id = r.run_id AND c.cell_index = r.cell_index
            JOIN targets t ON t.run_id = c.run_id AND t.target_index = c.target_index;
            CREATE TABLE connection_phases_done AS SELECT * FROM connection_phases WITH NO DATA;
            CREATE INDEX connection_phases_done_run ON connection_phases_done (run_id);
            -- Which pass over the plan's cells a cell belongs to (plan `repeat: N`): 0 … N-1; NULL
            -- when the plan does not repeat.
            ALTER TABLE cells ADD COLUMN repeat_index int;
            -- Labels a user gives a run (`loadstar runs tag`).
            ALTER TABLE runs ADD COLUMN tags text[] NOT NULL DEFAULT '{}';
            DO $$
            BEGIN
                GRANT SELECT ON connection_phases, connection_phases_done TO loadstar_reader;
            EXCEPTION WHEN OTHERS THEN
                RAISE NOTICE 'not granted to loadstar_reader: %', SQLERRM;
            END
            $$;
            """),
        Migration(version: 17, name: "the targets' own Prometheus metrics during a run", sql: """
            -- What each target's metrics endpoint said during the run (issue 18): every sample of
            -- the kept families, as served, with the scrape time on the coordinator's clock.
            -- labels is the sample's label set as served ({a="x",b="y"}; '' without labels).
            CREATE TABLE server_metrics (
                run_id       bigint NOT NULL REFERENCES runs ON DELETE CASCADE,
                target_index int NOT NULL,
                scraped_at   timestamptz NOT NULL,
                name         text NOT NULL,
                labels       text NOT NULL DEFAULT '',
                value        double precision NOT NULL,
                FOREIGN KEY (run_id, target_index) REFERENCES targets
            );
            CREATE INDEX server_metrics_run ON server_metrics (run_id, target_index, name, scraped_at);

            -- Per run × target × metric × label set × second: the last value scraped in that
            -- second (a gauge as it stood; a counter's running total).
            CREATE VIEW server_metrics_by_second AS
            SELECT m.run_id, t.name AS target, m.target_index, m.name AS metric, m.labels,
                   date_trunc('second', m.scraped_at) AS second,
                   (array_agg(m.value ORDER BY m.scraped_at DESC))[1] AS value
            FROM server_metrics m JOIN targets t USING (run_id, target_index)
            GROUP BY m.run_id, t.name, m.target_index, m.name, m.labels, second;

            -- The server's figures beside the client's, second by second, for each cell of the
            -- target: what the server was doing when the client's p99 TTFT moved.
            CREATE VIEW server_metrics_vs_client AS
            SELECT ts.run_id, ts.cell, ts.cell_index, ts.second, ts.completed, ts.ttft_p50_ms, ts.ttft_p99_ms,
                   s.target, s.metric, s.labels, s.value
            FROM timeseries ts
            JOIN cells c ON c.run_id = ts.run_id AND c.cell_index = ts.cell_index
            JOIN server_metrics_by_second s ON s.run_id = ts.run_id AND s.target_index = c.target_index AND s.second = ts.second;

            -- requests_accounted: a lost shard's requests that no row accounted for were written as
            -- lost or not_sent (migration 9 as shipped does not allow it); server_metrics_unavailable:
            -- a target's metrics endpoint could not be read (the run goes on without them).
            ALTER TABLE run_events DROP CONSTRAINT run_events_kind_check;
            ALTER TABLE run_events ADD CONSTRAINT run_events_kind_check CHECK (kind IN (
                'run_started', 'agent_unreachable', 'agent_back', 'agent_lost', 'load_reassigned', 'shard_done',
                'slo_verdict', 'run_finished', 'shard_refused', 'requests_accounted', 'server_metrics_unavailable'));

            DO $$
            BEGIN
                GRANT SELECT ON server_metrics, server_metrics_by_second, server_metrics_vs_client TO loadstar_reader;
            EXCEPTION WHEN undefined_object OR insufficient_privilege THEN
                RAISE NOTICE 'server metrics not granted to loadstar_reader: %', SQLERRM;
            END
            $$;
            """),
        Migration(version: 18, name: "server-reported timings per cell", sql: """
            -- Per run × cell, over the successful, measured requests whose stream carried the
            -- server's own timings (llama.cpp's timings object; migration 14): how many did, the
            -- server's prefill time (prompt_ms) and, beside it, the client's TTFT minus that prefill
            -- — what the network, the server's queue and its scheduling added. Client figures stay
            -- client figures: nothing here is mixed into latency_summary.
            CREATE VIEW server_timings AS
            SELECT run_id, cell, cell_index,
                   count(*) AS requests,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY server_prompt_us) / 1000 AS server_prefill_p50_ms,
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY server_prompt_us) / 1000 AS server_prefill_p99_ms,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY ttft_us) / 1000 AS ttft_p50_ms,
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY ttft_us) / 1000 AS ttft_p99_ms,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY ttft_us - server_prompt_us) / 1000 AS ttft_minus_prefill_p50_ms,
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY ttft_us - server_prompt_us) / 1000 AS ttft_minus_prefill_p99_ms,
                   avg(server_cached_tokens) AS server_cached_tokens_mean
            FROM request_samples
            WHERE error_class = 'none' AND NOT excluded AND server_prompt_us IS NOT NULL AND ttft_us IS NOT NULL
            GROUP BY run_id, cell, cell_index;

            CREATE TABLE server_timings_done AS SELECT * FROM server_timings WITH NO DATA;
            CREATE INDEX server_timings_done_run ON server_timings_done (run_id);

            DO $$
            BEGIN
                GRANT SELECT ON server_timings, server_timings_done TO loadstar_reader;
            EXCEPTION WHEN undefined_object OR insufficient_privilege THEN
                RAISE NOTICE 'server timings not granted to loadstar_reader: %', SQLERRM;
            END
            $$;
            """),
        Migration(version: 19, name: "raw samples pruned", sql: """
            -- loadstar db prune: when a finished run's raw samples (its samples_run_<id> partition)
            -- were dropped, keeping the results stored when it ended (the *_done tables), which its
            -- reports read. NULL while the raw rows are kept. A pruned run's results cannot be
            -- computed again, and the views over samples have no rows for it.
            ALTER TABLE runs ADD COLUMN raw_pruned_at timestamptz;
            """),
        Migration(version: 20, name: "run event kinds recorded on their constraint", sql: """
            -- Migration 9 shipped in two texts (7dff869 without the requests_accounted event kind,
            -- a443dec with it) and migration 17 with two comments; both are kept as they shipped,
            -- and every database ends with the same run_events_kind_check after 17. Where each kind
            -- comes from, on the constraint itself.
            COMMENT ON CONSTRAINT run_events_kind_check ON run_events IS
                'run_started, agent_unreachable, agent_back, agent_lost, load_reassigned, shard_done, slo_verdict, '
                'run_finished (migration 4); shard_refused (9); requests_accounted: a lost shard''s requests '
                'that no row accounted for, written as lost or not_sent (9 as a443dec shipped it, and 17); '
                'server_metrics_unavailable: a target''s metrics endpoint could not be read (17)';
            """),
        // Versions are applied when missing, in this array's order; MigrationHistoryTests checks
        // they run 1…N.
    ]
}
/// The SQL of migrations 1, 2, 4 and 9 as they first shipped, before they were edited in place
/// (`git log -p --follow Sources/LoadstarStore/Schema.swift`): the schema a database created then has.
/// `MigrationHistoryTests` pins the hash of each (`shipped[v].first`).
enum ShippedMigrations {
    static let firstSQL: [Int: String] = [
        // Migration 1 as commit 456c8d6 shipped it.
        1: """
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
            itl_us                  int[] NOT NULL
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
        -- milliseconds, from the raw rows of the whole fleet. Warm-up and cool-down samples are
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
               r.output_tokens
        FROM requests r
        LEFT JOIN gaps g USING (run_id, target, scenario);
        """,
        // Migration 2 as commit 335ebc9 shipped it.
        2: """
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
                   percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY ttft_us + send_lag_us)
                       FILTER (WHERE error_class = 'none') AS sched_ttft,
                   percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY e2e_us + send_lag_us)
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
               r.sched_ttft[1] / 1000 AS sched_ttft_p50_ms, r.sched_ttft[2] / 1000 AS sched_ttft_p99_ms,
               r.sched_e2e[1] / 1000 AS sched_e2e_p50_ms, r.sched_e2e[2] / 1000 AS sched_e2e_p99_ms,
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
               t.quality
        FROM requests r
        LEFT JOIN gaps g USING (run_id, cell_index)
        JOIN cells c ON c.run_id = r.run_id AND c.cell_index = r.cell_index
        JOIN targets t ON t.run_id = r.run_id AND t.target_index = c.target_index;
        """,
        // Migration 4 as commit 5b6ce5a shipped it.
        4: """
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

        -- Per run × cell × region (the agents' region): the latency percentiles of that region's
        -- requests, in milliseconds.
        CREATE VIEW latency_by_region AS
        SELECT run_id, target, scenario, cell, cell_index, region,
               count(*) AS requests,
               count(*) FILTER (WHERE error_class <> 'none') AS errors,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY ttft_us) FILTER (WHERE error_class = 'none') / 1000 AS ttft_p50_ms,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY ttft_us) FILTER (WHERE error_class = 'none') / 1000 AS ttft_p99_ms,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY tpot_us) FILTER (WHERE error_class = 'none') / 1000 AS tpot_p50_ms,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY tpot_us) FILTER (WHERE error_class = 'none') / 1000 AS tpot_p99_ms,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY e2e_us) FILTER (WHERE error_class = 'none') / 1000 AS e2e_p50_ms,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY e2e_us) FILTER (WHERE error_class = 'none') / 1000 AS e2e_p99_ms
        FROM request_samples
        WHERE NOT excluded
        GROUP BY run_id, target, scenario, cell, cell_index, region;

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
        """,
        // Migration 9 as commit 7dff869 shipped it (a443dec's text also allows requests_accounted).
        9: """
        -- SHA-256 of the secret each shard assignment carried: an agent that reconnects (to this
        -- coordinator or to one restarted with its identity) proves with it that a shard is its
        -- own before its batches are accepted. The secret itself is never stored.
        ALTER TABLE shards ADD COLUMN secret_sha256 bytea;
        -- shard_refused: an agent refused its shard (it failed the agent's plan validation).
        ALTER TABLE run_events DROP CONSTRAINT run_events_kind_check;
        ALTER TABLE run_events ADD CONSTRAINT run_events_kind_check CHECK (kind IN (
            'run_started', 'agent_unreachable', 'agent_back', 'agent_lost', 'load_reassigned', 'shard_done',
            'slo_verdict', 'run_finished', 'shard_refused'));
        """,
    ]
}

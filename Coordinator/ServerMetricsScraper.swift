import Foundation
import LoadstarPlan
import LoadstarProtocol
import LoadstarStore
import Logging

/// Scrapes each target's own Prometheus metrics during one run, at the plan's interval, and
/// stores every sample of the kept families with the scrape time on the coordinator's clock. A
/// target whose endpoint cannot be read is reported once (an event and a notice) and tried again
/// each interval; the run never fails for it.
struct ServerMetricsScraper: Sendable {
    struct Endpoint: Sendable {
        var targetIndex: Int
        var targetName: String
        var url: String
    }

    let runID: UInt64
    let endpoints: [Endpoint]
    let interval: Double
    let families: Set<String>
    /// The coordinator's `--allow-targets`, checked at every scrape against the addresses the
    /// host resolves to then, and the connection made to a checked address (so that a name
    /// rebound after the run was accepted cannot point the coordinator elsewhere); nil: anything.
    let allowList: ResolvedAllowList?

    init(runID: UInt64, plan: Plan, allowList: ResolvedAllowList? = nil) {
        self.runID = runID
        self.allowList = allowList
        self.endpoints = plan.targets.enumerated().compactMap { index, target in
            target.scrapeURL.map { Endpoint(targetIndex: index, targetName: target.name, url: $0) }
        }
        let settings = plan.serverMetrics ?? ServerMetrics()
        self.interval = settings.interval
        self.families = Set(settings.keptFamilies)
    }

    /// Scrapes until cancelled. `unavailable` hears the first failure of each target, in words.
    func run(database: Database, logger: Logger, unavailable: @escaping @Sendable (String) async -> Void) async {
        guard !self.endpoints.isEmpty else { return }
        var reported = Set<Int>()
        while !Task.isCancelled {
            let started = ContinuousClock.now
            let failures = await withTaskGroup(of: (Int, String?).self) { group in
                for endpoint in self.endpoints {
                    group.addTask { (endpoint.targetIndex, await self.scrape(endpoint, database: database)) }
                }
                var failures: [(Int, String)] = []
                for await (index, failure) in group { if let failure { failures.append((index, failure)) } }
                return failures
            }
            // A scrape cut short because the run ended is no failure of the target.
            if Task.isCancelled { return }
            for (index, failure) in failures where reported.insert(index).inserted {
                logger.warning("target metrics unavailable", metadata: ["run.id": "\(self.runID)", "detail": "\(failure)"])
                try? await database.recordEvent(runID: self.runID, kind: "server_metrics_unavailable", detail: failure)
                await unavailable(failure)
            }
            try? await Task.sleep(until: started + .seconds(self.interval), clock: .continuous)
        }
    }

    /// One scrape of one target; the reason it failed, or `nil`.
    private func scrape(_ endpoint: Endpoint, database: Database) async -> String? {
        let text: String
        do {
            var target = try MetricsFetcher.Endpoint(endpoint.url)
            if let allowList = self.allowList {
                let addresses = HostResolver.system(target.host)
                if let refusal = allowList.refusal(host: target.host, port: UInt16(clamping: target.port), addresses: addresses) {
                    return "target \(endpoint.targetName): its metrics_url is not allowed now (\(refusal)); not scraped"
                }
                if let checked = addresses.first { target.address = checked.description }
            }
            text = try await MetricsFetcher.fetch(target, timeout: min(max(self.interval, 0.5), 5))
        } catch {
            return "target \(endpoint.targetName): no metrics from \(endpoint.url) (\(error)); server-side figures are not recorded "
                + "(set metrics_url, or metrics_url: off)"
        }
        let scrapedAt = coordinatorNow()
        let reading = PrometheusText.read(text, families: self.families)
        if reading.samples.isEmpty {
            return "target \(endpoint.targetName): \(endpoint.url) serves none of the kept metric families "
                + "(\(reading.malformed) line(s) unreadable); list the ones it has under server_metrics.families"
        }
        do {
            try await database.recordServerMetrics(
                runID: self.runID, targetIndex: endpoint.targetIndex, scrapedAt: scrapedAt,
                samples: reading.samples.map { ($0.name, $0.labels, $0.value) })
        } catch {
            return nil  // the database is down: this scrape is lost, the next may be stored
        }
        return nil
    }
}

import Foundation
import NIOCore

/// Receives the tokens of one request as the engine produces them.
protocol TokenSink: AnyObject {
    func emit(_ emission: EngineModel.Emission)
}

/// Drives an ``EngineModel`` in real time on one event loop: each step is planned, then its
/// tokens are delivered when the step's time has passed, and the next step starts.
/// Confined to its loop.
final class InferenceEngine {
    private var model: EngineModel
    private let loop: any EventLoop
    private var sinks: [UInt64: any TokenSink] = [:]
    private var stepping = false

    var profile: SimulatorProfile { self.model.profile }

    init(profile: SimulatorProfile, loop: any EventLoop) {
        self.model = EngineModel(profile: profile)
        self.loop = loop
    }

    func fits(_ request: EngineModel.Request) -> Bool { self.model.fits(request) }

    var metrics: EngineModel.Metrics { self.model.metrics }

    func submit(_ request: EngineModel.Request, sink: any TokenSink) {
        self.sinks[request.id] = sink
        self.model.submit(request)
        if !self.stepping { self.runStep() }
    }

    func cancel(_ id: UInt64) {
        guard self.sinks.removeValue(forKey: id) != nil else { return }
        self.model.cancel(id)
    }

    private func runStep() {
        guard let step = self.model.step(now: wallMicros()) else {
            self.stepping = false
            return
        }
        self.stepping = true
        let deliver = {
            for emission in step.emissions {
                let sink = self.sinks[emission.id]
                if emission.isLast { self.sinks[emission.id] = nil }
                sink?.emit(emission)
            }
            self.runStep()
        }
        let isolated = self.loop.assumeIsolated()
        if step.duration <= 0 {
            isolated.execute(deliver)
        } else {
            isolated.scheduleTask(in: .microseconds(step.duration), deliver)
        }
    }
}

/// Wall-clock microseconds since the epoch: the clock the truth log uses, the same one agents on
/// this machine read.
func wallMicros() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1_000
}

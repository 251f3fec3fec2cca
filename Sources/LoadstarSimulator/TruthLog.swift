import Foundation

/// The simulator's own record of every request it served, as JSON lines: arrival time, the write
/// time of every token, and the token counts. Times are wall-clock µs since the epoch. Buffered;
/// confined to the simulator's event loop.
final class TruthLog {
    private let handle: FileHandle
    private var buffer = Data()

    init(path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw SimulatorError.cannotWrite(path)
        }
        self.handle = handle
    }

    /// `tokenTimes` holds reasoning tokens first (`reasoningTokens` of them), then the answer's:
    /// `first_answer_us` is the first answer token's time (TTFO's truth), `null` when none was written.
    func append(
        id: UInt64, profile: String, arrival: Int64, tokenTimes: [Int64], promptTokens: Int, cachedTokens: Int, outcome: String,
        reasoningTokens: Int = 0, cacheCreationTokens: Int = 0, api: String = ""
    ) {
        let times = tokenTimes.map(String.init).joined(separator: ",")
        let firstAnswer = tokenTimes.count > reasoningTokens ? String(tokenTimes[reasoningTokens]) : "null"
        let line = #"{"request_id":"sim-\#(id)","profile":"\#(profile)","api":"\#(api)","arrival_us":\#(arrival),"first_token_us":\#(tokenTimes.first.map(String.init) ?? "null"),"first_answer_us":\#(firstAnswer),"token_us":[\#(times)],"prompt_tokens":\#(promptTokens),"cached_tokens":\#(cachedTokens),"cache_creation_tokens":\#(cacheCreationTokens),"output_tokens":\#(tokenTimes.count),"reasoning_tokens":\#(min(reasoningTokens, tokenTimes.count)),"outcome":"\#(outcome)"}"#
        self.buffer.append(contentsOf: line.utf8)
        self.buffer.append(0x0A)
        if self.buffer.count > 64 * 1024 { self.flush() }
    }

    func flush() {
        guard !self.buffer.isEmpty else { return }
        self.handle.write(self.buffer)
        self.buffer.removeAll(keepingCapacity: true)
    }
}

public enum SimulatorError: Error, CustomStringConvertible {
    case cannotWrite(String)
    case unknownProfile(String, known: [String])
    case badProfileFile(String, String)
    case badTimeScale(Double)

    public var description: String {
        switch self {
        case .cannotWrite(let path): return "cannot write \(path)"
        case .unknownProfile(let name, let known): return "unknown profile '\(name)'; known: \(known.joined(separator: ", "))"
        case .badProfileFile(let path, let why): return "\(path): \(why)"
        case .badTimeScale(let scale):
            return "time scale \(scale) is outside \(SimulatorProfile.timeScales.lowerBound)…\(SimulatorProfile.timeScales.upperBound) (0.1 makes every duration ten times shorter)"
        }
    }
}

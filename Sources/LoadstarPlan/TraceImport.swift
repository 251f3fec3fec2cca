import Foundation

/// Public LLM-inference traces, turned into replay requests: Azure LLM inference trace CSV
/// (`TIMESTAMP,ContextTokens,GeneratedTokens`), Mooncake JSONL (`timestamp` ms, `input_length`,
/// `output_length`, `hash_ids` as shared prefix blocks), and BurstGPT CSV (`Timestamp`,
/// `Request tokens`, `Response tokens`, and `Session ID` where the file has it).
public enum TraceImport {
    public enum Format: String, Codable, Sendable, CaseIterable {
        case azure
        case mooncake
        case burstgpt
    }

    public struct Options: Equatable, Sendable {
        /// Multiplies every time (2 replays at half speed, 0.5 at double speed).
        public var timeScale: Double = 1
        /// Keeps this share of requests (below 1) or repeats requests (above 1), deterministically.
        public var rateScale: Double = 1
        /// Seconds into the trace where replay starts, and how much of it to replay (before scaling).
        public var windowStart: Double = 0
        public var windowDuration: Double?
        /// Prompts longer than this are clamped (most Mooncake prompts exceed an 8k context).
        public var maxPromptTokens: Int?
        public var seed: UInt64 = 1
        public init() {}
    }

    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// Reads a trace file and returns its requests, times relative to the window's start.
    public static func load(path: String, format: Format, options: Options) throws -> [Stage.ReplayRequest] {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw Failure(description: "cannot read trace \(path): \(error.localizedDescription)")
        }
        let rows = try self.parse(text, format: format, path: path)
        return self.shape(rows, options: options)
    }

    /// One trace row: seconds from the trace's start, prompt and output tokens.
    struct Row: Equatable {
        var at: Double
        var prompt: Int
        var output: Int
        var session: Int? = nil
        var blocks: [Int]? = nil
    }

    static func parse(_ text: String, format: Format, path: String) throws -> [Row] {
        var rows: [Row] = []
        let lines = text.split(whereSeparator: \.isNewline)
        switch format {
        case .mooncake:
            for (number, line) in lines.enumerated() where !line.isEmpty {
                guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
                    let timestamp = (object["timestamp"] as? NSNumber)?.doubleValue,
                    let input = (object["input_length"] as? NSNumber)?.intValue,
                    let output = (object["output_length"] as? NSNumber)?.intValue
                else { throw Failure(description: "\(path):\(number + 1): expected {timestamp, input_length, output_length}") }
                let blocks = (object["hash_ids"] as? [NSNumber])?.map(\.intValue)
                rows.append(Row(at: timestamp / 1000, prompt: input, output: output, blocks: blocks))
            }
        case .azure, .burstgpt:
            guard let header = lines.first else { return [] }
            let columns = header.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            let names = format == .azure
                ? ("TIMESTAMP", "ContextTokens", "GeneratedTokens") : ("Timestamp", "Request tokens", "Response tokens")
            guard let t = columns.firstIndex(of: names.0), let p = columns.firstIndex(of: names.1),
                let o = columns.firstIndex(of: names.2)
            else {
                throw Failure(description: "\(path):1: expected columns \(names.0), \(names.1), \(names.2); found \(columns.joined(separator: ", "))")
            }
            let sessionColumn = format == .burstgpt ? columns.firstIndex(of: "Session ID") : nil
            var origin: Double?
            for (number, line) in lines.dropFirst().enumerated() where !line.isEmpty {
                let fields = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
                guard fields.count > max(t, p, o, sessionColumn ?? 0), let prompt = Int(fields[p]), let output = Int(fields[o]),
                    let seconds = format == .azure ? self.azureSeconds(fields[t]) : Double(fields[t])
                else { throw Failure(description: "\(path):\(number + 2): cannot read \(names.0), \(names.1), \(names.2) from '\(line)'") }
                if origin == nil { origin = seconds }
                let session = sessionColumn.map { Self.sessionNumber(fields[$0]) }
                rows.append(Row(at: seconds - origin!, prompt: prompt, output: output, session: session))
            }
        }
        return rows.sorted { $0.at < $1.at }
    }

    /// A session id as a number: itself when numeric, else a stable hash of the text (FNV-1a).
    static func sessionNumber(_ text: String) -> Int {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if let number = Int(trimmed), number >= 0 { return number }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in trimmed.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return Int(hash >> 2)
    }

    /// `2023-11-16 18:17:03.9799600` or `2024-05-10 00:00:00.009930+00:00`, as seconds of the day
    /// plus days (only differences are used).
    static func azureSeconds(_ text: String) -> Double? {
        var s = Substring(text)
        if let plus = s.lastIndex(where: { $0 == "+" || $0 == "Z" }), plus > s.index(s.startIndex, offsetBy: 10) { s = s[..<plus] }
        let parts = s.split(separator: " ")
        guard parts.count == 2 else { return nil }
        let date = parts[0].split(separator: "-").compactMap { Int($0) }
        let time = parts[1].split(separator: ":")
        guard date.count == 3, time.count == 3, let h = Double(time[0]), let m = Double(time[1]), let sec = Double(time[2]) else {
            return nil
        }
        // Days since a fixed epoch (civil-from-days inverse), enough for differences across months.
        let (y, mo, d) = (date[0] - (date[1] <= 2 ? 1 : 0), date[1], date[2])
        let era = y / 400
        let yoe = y - era * 400
        let doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy
        return Double(days) * 86_400 + h * 3600 + m * 60 + sec
    }

    static func shape(_ rows: [Row], options: Options) -> [Stage.ReplayRequest] {
        let end = options.windowDuration.map { options.windowStart + $0 } ?? .infinity
        var rng = SplitMix64(seed: options.seed, 0x5452_4143_45)  // "TRACE"
        var out: [Stage.ReplayRequest] = []
        // Copies made by rate scaling are sessions of their own (a conversation is not repeated
        // inside itself): copy c of session s becomes session s + c × (largest session + 1).
        let sessionSpan = (rows.compactMap(\.session).max() ?? 0) + 1
        for row in rows where row.at >= options.windowStart && row.at < end {
            var copies = Int(options.rateScale.rounded(.down))
            if rng.nextUnit() <= options.rateScale - Double(copies) { copies += 1 }
            let prompt = options.maxPromptTokens.map { min($0, max(1, row.prompt)) } ?? max(1, row.prompt)
            let blocks = row.blocks.map { Array($0.prefix((prompt + Stage.prefixBlockTokens - 1) / Stage.prefixBlockTokens)) }
            for copy in 0..<copies {
                out.append(Stage.ReplayRequest(
                    at: (row.at - options.windowStart) * options.timeScale, promptTokens: prompt, outputTokens: max(1, row.output),
                    session: row.session.map { $0 &+ copy &* sessionSpan }, prefixBlocks: blocks))
            }
        }
        return out
    }
}

import CCurl
import Foundation
import LoadstarPlan
import LoadstarProtocol

/// A curl easy handle with the options of one target set once: URL, headers, timeouts, HTTP
/// version, TLS, the callbacks. The worker keeps finished ones and hands them to later requests of
/// the same target, which set only what differs (body, context): no `curl_easy_init`, header list
/// or twenty `setopt` calls per request. Options persist across transfers of a handle, and the
/// connections stay in the multi handle's connection cache either way. Confined to one worker.
final class EasyHandle {
    let easy: UnsafeMutableRawPointer
    /// What it was made for (the engine's pool key: the target's index).
    let key: Int
    private var headerList: UnsafeMutablePointer<curl_slist>?
    /// Whether connections go through ``Transfer/openSocket(purpose:address:)`` (an allow-list).
    let checksSockets: Bool

    /// The largest receive buffer a transfer gets: SSE events are small, and curl's 16 KiB default
    /// would be most of an open stream's memory.
    static let maximumReceiveBuffer = 4_096
    /// What the receive buffers of one worker's transfers may hold together, at its in-flight cap.
    static let receiveBufferBudget = 16 << 20

    /// The receive buffer of each of `inFlight` transfers open at once: ``maximumReceiveBuffer``,
    /// less when that many would not fit ``receiveBufferBudget`` (10,000 open streams on a worker
    /// get 1,677 bytes), and never under curl's least, 1 KiB. A whole static response of a few KiB
    /// then takes a few reads instead of one, which only an agent holding thousands of streams pays.
    static func receiveBufferSize(inFlight: Int) -> Int {
        max(1_024, min(Self.maximumReceiveBuffer, Self.receiveBufferBudget / max(1, inFlight)))
    }

    init?(
        url: String, headers: [String], target: Target, allowList: ResolvedAllowList = .anything, key: Int = 0,
        receiveBuffer: Int = EasyHandle.maximumReceiveBuffer
    ) {
        guard let easy = curl_easy_init() else { return nil }
        self.easy = easy
        self.key = key
        self.checksSockets = !allowList.allowsAnything
        let timeouts = target.timeouts
        let accept = target.streams ? "Accept: text/event-stream" : "Accept: application/json"
        for header in headers + ["Content-Type: application/json", accept, "Expect:"] {
            self.headerList = curl_slist_append(self.headerList, header)
        }
        _ = CCurl_easy_setopt_str(easy, CURLOPT_URL, url)
        _ = CCurl_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
        _ = CCurl_easy_setopt_long(easy, CURLOPT_POST, 1)
        _ = CCurl_easy_setopt_slist(easy, CURLOPT_HTTPHEADER, self.headerList)
        _ = CCurl_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, Int(timeouts.connect * 1000))
        _ = CCurl_easy_setopt_long(easy, CURLOPT_TIMEOUT_MS, Int(timeouts.total * 1000))
        _ = CCurl_easy_setopt_long(easy, CURLOPT_TCP_NODELAY, 1)
        _ = CCurl_easy_setopt_long(easy, CURLOPT_BUFFERSIZE, receiveBuffer)
        switch target.httpVersion {
        case .http1:
            _ = CCurl_easy_setopt_long(easy, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1)
        case .http2:
            let tls = url.hasPrefix("https://")
            _ = CCurl_easy_setopt_long(easy, CURLOPT_HTTP_VERSION, tls ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE)
            // Wait for a connection that can multiplex rather than opening another.
            _ = CCurl_easy_setopt_long(easy, CURLOPT_PIPEWAIT, 1)
        }
        if let caFile = target.tls.caFile { _ = CCurl_easy_setopt_str(easy, CURLOPT_CAINFO, caFile) }
        if target.tls.insecure {
            _ = CCurl_easy_setopt_long(easy, CURLOPT_SSL_VERIFYPEER, 0)
            _ = CCurl_easy_setopt_long(easy, CURLOPT_SSL_VERIFYHOST, 0)
        }
        // The callbacks capture nothing; each transfer sets the context they get (its own object).
        _ = CCurl_easy_setopt_write(easy, CURLOPT_WRITEFUNCTION) { bytes, size, count, userdata in
            let transfer = Unmanaged<Transfer>.fromOpaque(userdata!).takeUnretainedValue()
            return transfer.received(UnsafeRawBufferPointer(start: bytes, count: size * count))
        }
        _ = CCurl_easy_setopt_write(easy, CURLOPT_HEADERFUNCTION) { bytes, size, count, userdata in
            let transfer = Unmanaged<Transfer>.fromOpaque(userdata!).takeUnretainedValue()
            if transfer.firstByteAt < 0 { transfer.firstByteAt = AgentClock.monotonicMicros() }
            transfer.header(UnsafeRawBufferPointer(start: bytes, count: size * count))
            return size * count
        }
        if self.checksSockets {
            // curl calls this instead of socket() for every connection it opens (not for a reused
            // one, which the same list let through when it was opened).
            _ = CCurl_easy_setopt_opensocket(easy) { userdata, purpose, address in
                let transfer = Unmanaged<Transfer>.fromOpaque(userdata!).takeUnretainedValue()
                return transfer.openSocket(purpose: purpose, address: address!)
            }
        }
    }

    deinit {
        curl_easy_cleanup(self.easy)
        curl_slist_free_all(self.headerList)
    }
}

/// One request in flight: its curl easy handle, its body, and what the stream has shown so far.
/// Confined to the worker thread that owns the multi handle.
final class Transfer {
    /// The handle it runs on; the engine takes it back for a later request once this one is over.
    let handle: EasyHandle
    var easy: UnsafeMutableRawPointer { self.handle.easy }
    /// The request body; curl reads it in place (CURLOPT_POSTFIELDS), so it must outlive the transfer.
    private let body: [UInt8]
    private var parser: SSEParser
    /// For a target whose responses are not streams (embeddings): its body, scanned as it arrives.
    private var embeddingsBody: EmbeddingsResponse?
    /// Embeddings the response must hold (the target's batch size).
    private let expectedInputs: Int
    /// Whether the response is an event stream, whose first token and silences are timed.
    var streams: Bool { self.embeddingsBody == nil }

    var sample: Sample
    let timeouts: Timeouts
    /// Monotonic µs at hand-over to curl.
    let sentAtMonotonic: Int64
    var firstByteAt: Int64 = -1
    var firstTokenAt: Int64 = -1
    /// First answer (not reasoning) event: TTFO.
    var firstAnswerAt: Int64 = -1
    /// Events that carried reasoning text only: the reasoning-token estimate without usage.
    var reasoningEvents = 0
    var lastEventAt: Int64 = -1
    var lastOutputAt: Int64 = -1
    var outputEvents = 0
    var sawDone = false
    var streamError: String?
    var usagePrompt: Int?
    var usageCompletion: Int?
    var usageCached: Int?
    var usageReasoning: Int?
    var serverTimings: Sample.ServerTimings?
    /// Set when we stop the transfer ourselves (timeouts, abort).
    var forcedError: ErrorClass?
    /// For a turn of an open-loop session: what the next turn follows from.
    typealias SessionTurn = (request: ScheduledRequest, cell: Cell, stageIndex: Int)
    var session: SessionTurn?
    /// The HTTP status, read once when the body starts.
    private var bodyStatus: Int?
    /// The start of an error response's body (status 400 and up), for the error detail.
    private var errorBody: [UInt8] = []
    /// Where this transfer may connect; checked on every new connection curl opens for it.
    let allowList: ResolvedAllowList
    /// Turns secret values a target echoes back into `[secret NAME]` in the error detail.
    let redactor: SecretRedactor
    /// The first connection the allow-list refused (`10.0.0.5:443`), and how many it let through.
    var refusedConnection: (address: IPAddress, port: UInt16)?
    var permittedConnections = 0

    /// Bytes of an error body kept: far more than the detail shows, so a secret is redacted whole
    /// before the detail is cut to ``errorDetailLimit``.
    static let errorBodyLimit = 2_048
    /// Characters of target-supplied text in an error detail.
    static let errorDetailLimit = 200

    /// A transfer on a handle of its own.
    /// - Parameters:
    ///   - allowList: the addresses and ports the transfer may connect to; with ``ResolvedAllowList/anything``
    ///     curl opens its sockets itself, as it would without a list.
    ///   - redactor: applied to target-supplied text in the error detail.
    convenience init?(
        url: String, headers: [String], body: String, target: Target, sample: Sample, sentAtMonotonic: Int64,
        allowList: ResolvedAllowList = .anything, redactor: SecretRedactor = .none
    ) {
        guard let handle = EasyHandle(url: url, headers: headers, target: target, allowList: allowList) else { return nil }
        self.init(handle: handle, body: Array(body.utf8), target: target, sample: sample, sentAtMonotonic: sentAtMonotonic, allowList: allowList, redactor: redactor)
    }

    /// A transfer on `handle`, made for `target` with the same allow-list (a fresh one, or one a
    /// finished transfer gave back): only the body and the callbacks' context are set here.
    init(
        handle: EasyHandle, body: [UInt8], target: Target, sample: Sample, sentAtMonotonic: Int64,
        allowList: ResolvedAllowList = .anything, redactor: SecretRedactor = .none
    ) {
        self.handle = handle
        self.timeouts = target.timeouts
        // Never empty: an empty array may have no storage, and a null CURLOPT_POSTFIELDS makes
        // curl read the body from standard input.
        self.body = body.isEmpty ? [0] : body
        self.parser = SSEParser(kind: target.kind)
        self.embeddingsBody = target.streams ? nil : EmbeddingsResponse()
        self.expectedInputs = target.inputsPerRequest
        self.sample = sample
        // One gap per output token after the first: grown append by append, the array would be
        // reallocated five times for 16 tokens. Reserved up to 64 (256 bytes), so that 10,000
        // open streams of long answers do not hold megabytes they may never fill.
        if target.streams { self.sample.gaps.reserveCapacity(Int(min(max(sample.outputTokensRequested, 1), 64))) }
        self.sentAtMonotonic = sentAtMonotonic
        self.allowList = allowList
        self.redactor = redactor
        let easy = handle.easy
        _ = CCurl_easy_setopt_long(easy, CURLOPT_POSTFIELDSIZE, body.count)
        // The array is never changed, so its storage stays where curl reads it for the transfer's
        // life; a read-only view takes no unique copy of a body another array still shares.
        self.body.withUnsafeBufferPointer { _ = CCurl_easy_setopt_ptr(easy, CURLOPT_POSTFIELDS, UnsafeMutableRawPointer(mutating: $0.baseAddress)) }
        let context = Unmanaged.passUnretained(self).toOpaque()
        _ = CCurl_easy_setopt_ptr(easy, CURLOPT_PRIVATE, context)
        _ = CCurl_easy_setopt_ptr(easy, CURLOPT_WRITEDATA, context)
        _ = CCurl_easy_setopt_ptr(easy, CURLOPT_HEADERDATA, context)
        if handle.checksSockets { _ = CCurl_easy_setopt_ptr(easy, CURLOPT_OPENSOCKETDATA, context) }
    }

    /// Keeps the server's request id (`x-request-id`, `request-id`), at most 64 bytes.
    /// Every header line comes here, so the name is compared as bytes, without making a string.
    fileprivate func header(_ line: UnsafeRawBufferPointer) {
        guard line.count > 12, line.count < 200, let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return }
        let name = UnsafeRawBufferPointer(rebasing: line[..<colon])
        guard Self.isRequestIDHeader(name) else { return }
        let value = String(decoding: line[(colon + 1)...], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        self.sample.serverRequestID = String(value.prefix(64))
    }

    /// `x-request-id` or `request-id`, in any case.
    static func isRequestIDHeader(_ name: UnsafeRawBufferPointer) -> Bool {
        let suffix = "request-id".utf8
        guard name.count == suffix.count || name.count == suffix.count + 2 else { return false }
        func lower(_ b: UInt8) -> UInt8 { b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z") ? b | 0x20 : b }
        if name.count == suffix.count + 2 && !(lower(name[0]) == UInt8(ascii: "x") && name[1] == UInt8(ascii: "-")) { return false }
        return zip(name.suffix(suffix.count), suffix).allSatisfy { lower($0) == $1 }
    }

    /// Body bytes: fed to the SSE parser, stamped once per read. Returning anything but the byte
    /// count makes curl abort the transfer, which is how a forced stop ends it.
    fileprivate func received(_ bytes: UnsafeRawBufferPointer) -> Int {
        let now = AgentClock.monotonicMicros()
        if self.firstByteAt < 0 { self.firstByteAt = now }
        if self.forcedError != nil { return 0 }
        if self.bodyStatus == nil { self.bodyStatus = self.httpStatus }  // headers are complete by the first body byte
        if self.bodyStatus! >= 400 {  // error body: not a stream; its start goes into the detail
            let room = Self.errorBodyLimit - self.errorBody.count
            if room > 0 { self.errorBody.append(contentsOf: bytes.prefix(room)) }
            return bytes.count
        }
        if self.embeddingsBody != nil {
            self.embeddingsBody!.append(bytes)
            return bytes.count
        }
        self.parser.feed(bytes) { self.handle($0, at: now) }
        return bytes.count
    }

    private var httpStatus: Int {
        var code = 0
        _ = CCurl_easy_getinfo_long(self.easy, CURLINFO_RESPONSE_CODE, &code)
        return code
    }

    private func handle(_ event: StreamEvent, at now: Int64) {
        self.lastEventAt = now
        if event.carriesOutput {
            if self.firstTokenAt < 0 {
                self.firstTokenAt = now
            } else {
                self.sample.gaps.append(UInt32(clamping: now - self.lastOutputAt))
            }
            self.lastOutputAt = now
            self.outputEvents += 1
            if event.carriesAnswer {
                if self.firstAnswerAt < 0 { self.firstAnswerAt = now }
            } else {
                self.reasoningEvents += 1
            }
        }
        if event.isDone { self.sawDone = true }
        if let error = event.error, self.streamError == nil { self.streamError = error }
        if let p = event.promptTokens { self.usagePrompt = p }
        if let c = event.completionTokens { self.usageCompletion = c }
        if let c = event.cachedTokens { self.usageCached = c }
        if let r = event.reasoningTokens { self.usageReasoning = r }
        if let t = event.serverTimings { self.serverTimings = t }
    }

    /// Runs the transfer to its end on this thread, outside any multi handle (calibration probes).
    func perform() -> Sample {
        let result = curl_easy_perform(self.easy)
        return self.finish(result: result, at: AgentClock.monotonicMicros())
    }

    /// Completes the sample once curl is done with the transfer.
    func finish(result: CURLcode, at now: Int64) -> Sample {
        self.parser.finish { self.handle($0, at: now) }
        let whole = self.embeddingsBody?.read()
        if let whole { self.usagePrompt = whole.promptTokens }
        var s = self.sample
        let status = self.httpStatus
        s.httpStatus = UInt16(clamping: status)
        s.e2e = now - self.sentAtMonotonic
        s.ttfb = self.firstByteAt >= 0 ? self.firstByteAt - self.sentAtMonotonic : -1
        s.ttft = self.firstTokenAt >= 0 ? self.firstTokenAt - self.sentAtMonotonic : -1
        s.ttfo = self.firstAnswerAt >= 0 ? self.firstAnswerAt - self.sentAtMonotonic : -1
        var t: curl_off_t = 0
        var previous: curl_off_t = 0
        if CCurl_easy_getinfo_off(self.easy, CURLINFO_NAMELOOKUP_TIME_T, &t) == CURLE_OK { s.dns = Int32(clamping: t) }
        previous = t
        if CCurl_easy_getinfo_off(self.easy, CURLINFO_CONNECT_TIME_T, &t) == CURLE_OK, t > 0 {
            s.connect = Int32(clamping: t - previous)
            previous = t
        }
        if CCurl_easy_getinfo_off(self.easy, CURLINFO_APPCONNECT_TIME_T, &t) == CURLE_OK, t > 0 {
            s.tls = Int32(clamping: t - previous)
        }
        var connects = 0
        if CCurl_easy_getinfo_long(self.easy, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK, connects == 0 {
            s.flags.insert(.connectionReused)
        }
        s.promptTokens = Int32(clamping: self.usagePrompt ?? -1)
        s.cachedTokens = Int32(clamping: self.usageCached ?? -1)
        if whole != nil {
            s.outputTokens = 0  // embeddings produce no tokens
        } else if let completion = self.usageCompletion {
            s.outputTokens = Int32(clamping: completion)
        } else {
            s.outputTokens = Int32(clamping: self.outputEvents)
            s.flags.insert(.outputTokensEstimated)
        }
        if let reasoning = self.usageReasoning {
            s.reasoningTokens = Int32(clamping: reasoning)
        } else if self.reasoningEvents > 0 {
            s.reasoningTokens = Int32(clamping: self.reasoningEvents)
            s.flags.insert(.reasoningTokensEstimated)
        }
        s.serverTimings = self.serverTimings ?? .none
        (s.errorClass, s.errorDetail) = self.classify(result: result, status: status, whole: whole)
        return s
    }

    /// Opens the socket for a connection the allow-list permits; refuses (`CURL_SOCKET_BAD`, which
    /// curl reports as `CURLE_COULDNT_CONNECT` once no address is left) any other.
    fileprivate func openSocket(purpose: curlsocktype, address: UnsafeMutablePointer<curl_sockaddr>) -> curl_socket_t {
        let sockaddrOffset = MemoryLayout<curl_sockaddr>.offset(of: \curl_sockaddr.addr)!
        // curl passes a whole sockaddr_in6 where the header declares a 16-byte sockaddr.
        let endpoint = IPAddress.fromSocketAddress(UnsafeRawPointer(address) + sockaddrOffset)
        guard purpose == CURLSOCKTYPE_IPCXN, let (ip, port) = endpoint, self.allowList.permits(address: ip, port: port) else {
            if self.refusedConnection == nil, let endpoint { self.refusedConnection = endpoint }
            return CURL_SOCKET_BAD
        }
        self.permittedConnections += 1
        return AllowedSocket.open(family: address.pointee.family, type: address.pointee.socktype, protocol: address.pointee.protocol)
    }

    private func classify(result: CURLcode, status: Int, whole: EmbeddingsResponse.Reading? = nil) -> (ErrorClass, String) {
        if let forced = self.forcedError { return (forced, "stopped by the agent: \(forced.name)") }
        // Every connection curl tried was refused by the allow-list (with some let through, the
        // failure is theirs and classified as usual).
        if result != CURLE_OK, let refused = self.refusedConnection, self.permittedConnections == 0 {
            return (.forbiddenTarget, ResolvedAllowList.refusalDetail(address: refused.address, port: refused.port))
        }
        switch result {
        case CURLE_OK:
            break
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY:
            return (.dns, Self.describe(result))
        case CURLE_COULDNT_CONNECT:
            return (.connect, Self.describe(result))
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER,
            CURLE_SSL_CACERT_BADFILE:
            return (.tls, Self.describe(result))
        case CURLE_OPERATION_TIMEDOUT:
            var connected: curl_off_t = 0
            _ = CCurl_easy_getinfo_off(self.easy, CURLINFO_CONNECT_TIME_T, &connected)
            return (connected == 0 ? .timeoutConnect : .timeoutTotal, Self.describe(result))
        case CURLE_PARTIAL_FILE, CURLE_RECV_ERROR, CURLE_GOT_NOTHING, CURLE_SEND_ERROR:
            return (.streamCut, Self.describe(result))
        case CURLE_WEIRD_SERVER_REPLY, CURLE_BAD_CONTENT_ENCODING, CURLE_HTTP2, CURLE_HTTP2_STREAM:
            return (.badStream, Self.describe(result))
        default:
            return (.other, Self.describe(result))
        }
        switch status {
        case 429: return (.http429, self.httpErrorDetail(status))
        case 400..<500: return (.http4xx, self.httpErrorDetail(status))
        case 500...: return (.http5xx, self.httpErrorDetail(status))
        case 200..<300: break
        default: return (.badStream, "unexpected HTTP status \(status)")
        }
        if let whole {
            if let problem = whole.problem { return (.badStream, self.targetText(problem)) }
            if whole.embeddings != self.expectedInputs {
                return (.badStream, "expected \(self.expectedInputs) embeddings, the response held \(whole.embeddings)")
            }
            return (.none, "")
        }
        if let error = self.streamError { return (.badStream, self.targetText(error)) }
        if !self.sawDone { return (.streamCut, "stream ended before its end marker") }
        if self.outputEvents == 0 { return (.badStream, "stream carried no output") }
        return (.none, "")
    }

    /// `HTTP 401`, followed by the start of the body the target sent with it, if any.
    private func httpErrorDetail(_ status: Int) -> String {
        let body = String(decoding: self.errorBody, as: UTF8.self)
        let text = self.targetText(body)
        return text.isEmpty ? "HTTP \(status)" : "HTTP \(status): \(text)"
    }

    /// Text a target sent, fit for an error detail: secrets redacted (before it is cut, so no
    /// secret is cut in half and missed), runs of whitespace collapsed, at most ``errorDetailLimit``
    /// characters.
    private func targetText(_ text: String) -> String {
        let words = self.redactor.redact(text).split(whereSeparator: \Character.isWhitespace)
        var out = ""
        var characters = 0
        for word in words {
            if !out.isEmpty { out += " " }
            out += word
            characters += word.count + 1
            if characters > Self.errorDetailLimit { break }
        }
        return String(out.prefix(Self.errorDetailLimit))
    }

    private static func describe(_ code: CURLcode) -> String {
        String(cString: curl_easy_strerror(code))
    }
}

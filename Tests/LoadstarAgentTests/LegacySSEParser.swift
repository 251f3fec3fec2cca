import Foundation
@testable import LoadstarAgent
import LoadstarPlan

/// The SSE framing as it was before lines were read in place (commit c4d62cb): every line copied
/// into a buffer, then its data into another. Kept as the oracle the in-place parser must match,
/// event for event; events are interpreted by today's ``SSEParser/interpret(data:eventName:kind:)``.
struct LegacySSEParser {
    let kind: Target.Kind
    private var line: [UInt8] = []
    private var data: [UInt8] = []
    private var hasData = false
    private var eventName = ""
    private var lastWasCR = false
    /// Guard against a server that never sends a newline.
    static let maximumLineLength = 4 << 20

    /// The line buffer grows to the stream's longest line on first use; nothing is reserved up
    /// front, since thousands of open streams would each hold the reserve.
    init(kind: Target.Kind) {
        self.kind = kind
    }

    /// Feeds bytes; calls `onEvent` for every complete event, in order. Runs of line content
    /// are copied in bulk; only line ends are handled byte by byte.
    mutating func feed(_ bytes: UnsafeRawBufferPointer, onEvent: (StreamEvent) -> Void) {
        let n = bytes.count
        var i = 0
        while i < n {
            if self.lastWasCR {
                self.lastWasCR = false
                if bytes[i] == 0x0A {  // the LF of a CRLF
                    i += 1
                    continue
                }
            }
            var j = i
            while j < n {
                let b = bytes[j]
                if b == 0x0A || b == 0x0D { break }
                j += 1
            }
            if j > i {
                if self.line.count + (j - i) <= Self.maximumLineLength {
                    self.line.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[i..<j]))
                } else {
                    onEvent(StreamEvent(error: "stream line longer than \(Self.maximumLineLength) bytes"))
                    self.line.removeAll(keepingCapacity: true)
                }
            }
            guard j < n else { return }
            self.lastWasCR = bytes[j] == 0x0D
            self.endLine(onEvent)
            i = j + 1
        }
    }

    /// Dispatches a final event that was not followed by a blank line.
    mutating func finish(onEvent: (StreamEvent) -> Void) {
        if !self.line.isEmpty { self.endLine(onEvent) }
        if self.hasData { self.dispatch(onEvent) }
    }

    private mutating func endLine(_ onEvent: (StreamEvent) -> Void) {
        defer { self.line.removeAll(keepingCapacity: true) }
        if self.line.isEmpty {
            if self.hasData { self.dispatch(onEvent) }
            self.eventName = ""
            return
        }
        if self.line[0] == 0x3A { return }  // ":" comment
        let colon = self.line.firstIndex(of: 0x3A) ?? self.line.count
        let field = self.line[0..<colon]
        var valueStart = colon + 1
        if valueStart < self.line.count && self.line[valueStart] == 0x20 { valueStart += 1 }
        let value = valueStart <= self.line.count ? self.line[min(valueStart, self.line.count)...] : []
        if field.elementsEqual("data".utf8) {
            if self.hasData { self.data.append(0x0A) }
            self.data.append(contentsOf: value)
            self.hasData = true
        } else if field.elementsEqual("event".utf8) {
            self.eventName = String(decoding: value, as: UTF8.self)
        }
    }

    private mutating func dispatch(_ onEvent: (StreamEvent) -> Void) {
        defer {
            self.data.removeAll(keepingCapacity: true)
            self.hasData = false
        }
        onEvent(SSEParser.interpret(data: self.data, eventName: self.eventName, kind: self.kind))
    }

}

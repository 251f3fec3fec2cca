import Foundation

/// Token counts read from a dataset file, for `dataset:` distributions.
enum DatasetFile {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// The values of `field` in a JSONL or CSV file, or every line's number when `field` is `nil`.
    static func values(path: String, field: String?) throws -> [Int] {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw Failure(description: "cannot read dataset \(path): \(error.localizedDescription)")
        }
        let lines = text.split(whereSeparator: \.isNewline).filter { !$0.allSatisfy(\.isWhitespace) }
        guard let first = lines.first else { throw Failure(description: "dataset \(path) is empty") }
        var values: [Int] = []
        values.reserveCapacity(lines.count)
        if first.hasPrefix("{") {
            guard let field else { throw Failure(description: "dataset \(path) is JSONL: name the field to read with `field`") }
            for (number, line) in lines.enumerated() {
                guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
                    let value = (object[field] as? NSNumber)?.intValue, value >= 1
                else { throw Failure(description: "\(path):\(number + 1): expected an object whose \"\(field)\" is a token count ≥ 1") }
                values.append(value)
            }
        } else if let field {
            let columns = first.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard let column = columns.firstIndex(of: field) else {
                throw Failure(description: "\(path):1: no column \"\(field)\"; the header has \(columns.joined(separator: ", "))")
            }
            for (number, line) in lines.dropFirst().enumerated() {
                let fields = line.split(separator: ",", omittingEmptySubsequences: false)
                guard fields.count > column, let value = Int(fields[column].trimmingCharacters(in: .whitespaces)), value >= 1 else {
                    throw Failure(description: "\(path):\(number + 2): column \"\(field)\" is not a token count ≥ 1")
                }
                values.append(value)
            }
        } else {
            for (number, line) in lines.enumerated() {
                guard let value = Int(line.trimmingCharacters(in: .whitespaces)), value >= 1 else {
                    throw Failure(description: "\(path):\(number + 1): expected one token count ≥ 1 per line (or name a CSV/JSONL field)")
                }
                values.append(value)
            }
        }
        guard !values.isEmpty else { throw Failure(description: "dataset \(path) has no values") }
        return values
    }
}

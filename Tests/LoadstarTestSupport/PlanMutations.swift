import Foundation
import LoadstarPlan

/// Mutations of a JSON tree (from `JSONSerialization`), at one random node.
public enum JSONMutator {
    public static var numbers: [Any] { [
        0, -1, 1, 2, -1e308, 1e308, 1e-300, 0.5, -0.5, NSNumber(value: UInt64(1) << 63), Int.max, Int.min, 1 << 32, 4_294_967_296.5, 1e18,
        2_000_001, 65_536, 1_000_000_000,
    ] }

    public static func mutate(_ node: inout Any, _ rng: inout SplitMix64) {
        // Walk down a random path, stopping at each level with some probability.
        if rng.next() % 4 != 0 {
            if var object = node as? [String: Any], !object.isEmpty {
                let keys = object.keys.sorted()
                let key = keys[Int(rng.next() % UInt64(keys.count))]
                var child = object[key]!
                mutate(&child, &rng)
                object[key] = child
                node = object
                return
            }
            if var array = node as? [Any], !array.isEmpty {
                let index = Int(rng.next() % UInt64(array.count))
                mutate(&array[index], &rng)
                node = array
                return
            }
        }
        self.mutateHere(&node, &rng)
    }

    public static func mutateHere(_ node: inout Any, _ rng: inout SplitMix64) {
        let choice = rng.next() % 10
        switch node {
        case var object as [String: Any] where choice < 6 && !object.isEmpty:
            let keys = object.keys.sorted()
            switch choice {
            case 0, 1:  // remove a key
                object[keys[Int(rng.next() % UInt64(keys.count))]] = nil
            case 2, 3:  // swap two values (min and max of a uniform, low and high of a bin…)
                let a = keys[Int(rng.next() % UInt64(keys.count))]
                let b = keys[Int(rng.next() % UInt64(keys.count))]
                (object[a], object[b]) = (object[b], object[a])
            default:  // a key's value becomes a number
                object[keys[Int(rng.next() % UInt64(keys.count))]] = numbers[Int(rng.next() % UInt64(numbers.count))]
            }
            node = object
        case var array as [Any] where choice < 7:
            switch choice {
            case 0, 1, 2: array = []
            case 3: if array.count >= 2 { array.swapAt(0, array.count - 1) } else { array = [] }
            case 4: if let first = array.first { array += Array(repeating: first, count: 3) }
            case 5: if !array.isEmpty { array.removeLast() }
            default: array = array.reversed()
            }
            node = array
        case let number as NSNumber where choice < 8:
            let value = number.doubleValue
            let derived: [Any] = [Double]([-value, value * 1e6, value + 1, value - 1, value / 1e6]).filter { $0.isFinite }.map { $0 as Any }
            let options: [Any] = numbers + derived + [NSNumber(value: UInt64(1) << 63)]
            node = options[Int(rng.next() % UInt64(options.count))]
        case let text as String where choice < 6:
            let options: [Any] = ["", "Bearer sk-live-\(rng.next() % 1000)", text + text, "ftp://x", "gamma", "partial", "reassign", "2"]
            node = options[Int(rng.next() % UInt64(options.count))]
        default:  // the wrong type
            let options: [Any] = ["x", NSNull(), [Any](), [String: Any](), true, numbers[Int(rng.next() % UInt64(numbers.count))]]
            node = options[Int(rng.next() % UInt64(options.count))]
        }
    }
}

/// Mutations JSON cannot express: NaN and infinities in the plan's floating-point fields.
public enum ValueMutator {
    public static let values: [Double] = [.nan, .infinity, -.infinity, -0.0, 1e308, .leastNonzeroMagnitude, .greatestFiniteMagnitude]

    public static func mutate(_ plan: inout Plan, _ rng: inout SplitMix64) {
        let v = values[Int(rng.next() % UInt64(values.count))]
        let t = Int(rng.next() % UInt64(plan.targets.count))
        let w = Int(rng.next() % UInt64(plan.workloads.count))
        let s = Int(rng.next() % UInt64(plan.load.stages.count))
        switch rng.next() % 14 {
        case 0: plan.targets[t].timeouts.connect = v
        case 1: plan.targets[t].timeouts.firstToken = v
        case 2: plan.targets[t].quality = v
        case 3: plan.workloads[w].promptTokens = .normal(mean: v, stddev: 1)
        case 4: plan.workloads[w].outputTokens = .logNormal(mean: 100, stddev: v)
        case 5: plan.workloads[w].prefixShare = v
        case 6: plan.workloads[w].temperature = v
        case 7: plan.load.warmup = v
        case 8: plan.load.stages[s].duration = v
        case 9: plan.load.stages[s].rampTo = v
        case 10: plan.load.stages[s].burstiness = v
        case 11:
            if case .rate(_, let arrival) = plan.load.stages[s].mode { plan.load.stages[s].mode = .rate(v, arrival) } else {
                plan.load.stages[s].mode = .concurrency(2, thinkTime: v)
            }
        case 12: plan.matrix.rate = [v]
        default: plan.slos.e2eP99Ms = v
        }
    }
}

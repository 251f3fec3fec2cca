#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A small, fast, seedable generator (Vigna's SplitMix64). The same seed gives the same stream on
/// every machine, which is what makes shards reproducible.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { self.state = seed }

    /// A seed derived from several values, for independent streams (per cell, stage, request).
    public init(seed: UInt64, _ parts: UInt64...) {
        var s = seed
        for part in parts {
            var g = SplitMix64(seed: s ^ (part &* 0x9E37_79B9_7F4A_7C15))
            s = g.next()
        }
        self.state = s
    }

    public mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    public mutating func nextUnit() -> Double {
        Double((self.next() >> 11) + 1) * 0x1.0p-53
    }

    /// Gamma with the given shape and scale 1 (Marsaglia and Tsang; shapes below 1 boosted).
    public mutating func nextGamma(shape: Double) -> Double {
        if shape < 1 {
            return self.nextGamma(shape: shape + 1) * pow(self.nextUnit(), 1 / shape)
        }
        let d = shape - 1.0 / 3
        let c = 1 / (9 * d).squareRoot()
        while true {
            var x: Double
            var v: Double
            repeat {
                x = self.nextGaussian()
                v = 1 + c * x
            } while v <= 0
            v = v * v * v
            let u = self.nextUnit()
            if u < 1 - 0.0331 * x * x * x * x || log(u) < 0.5 * x * x + d * (1 - v + log(v)) { return d * v }
        }
    }

    /// Standard normal (Box–Muller).
    public mutating func nextGaussian() -> Double {
        let u1 = self.nextUnit()
        let u2 = self.nextUnit()
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }
}

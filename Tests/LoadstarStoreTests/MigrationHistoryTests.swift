import Testing

@testable import LoadstarStore

/// Migrations are append-only: a database that applied a migration never applies it again, so
/// editing one leaves every such database on the old SQL while the code and `docs/sql.md`
/// describe the new. Each migration's SQL is pinned here by its SHA-256; to change the schema,
/// append a migration (and its hash).
@Suite struct MigrationHistoryTests {
    /// Per version, the SHA-256 of every SQL text it shipped with, oldest first. Only the last may
    /// be the current one; the earlier ones are history, kept so the repair stays explainable.
    /// 1, 2 and 4 were edited after release; migration 10 brings databases made with their
    /// first SQL to the current schema (`MigrationRepairTests` in the end-to-end tests). 9 shipped
    /// in two texts and 17 in two comments; every database ends with the same event-kind
    /// constraint after 17, and migration 20 records the kinds on it.
    static let shipped: [Int: [String]] = [
        1: [
            "871eab027af4e6d5b56871614ac8a6812ca090f2e99ef5f9c0355abf4791ed7d",  // 456c8d6: no server_request_id
            "9ebdd161aaf82b35b63f04ff1841ea2186ecc85f2a8ca2a9ff23ba22ea6eafed",  // 2d78a17: no sched_* in latency_summary
            "27499e3941200756a933c46aa4d61df41239ea514f5336137ba28dee4a17feb1",  // 223f9ca
        ],
        2: [
            "347b8e877a1080736ccf9dc2428516af7f085ae3259b1b6ebf11a85124e24f09",  // 335ebc9: sched_* at p50 and p99 only
            "a2b3fa6dc80d2d498696b29ba7c7407cc536f870d1d4ede57268c5b0e68d23d3",  // 5c62ac0
        ],
        3: ["bc890f5edc5b705fe95c7ada7950f657f640901621b89ee7fe503d39225cf6f8"],
        4: [
            "9455d0dabedde8beee47dc4f61e86dc4d3cdc98a22a6b5a1dec53da4e91a99ad",  // 5b6ce5a: latency_by_region at p50 and p99
            "b65bb34e06237bd1b83fef4a3adc9982928daf2d09b151dad1bd731ed8a80af6",  // 48a7848
        ],
        5: ["a89e0b60c40d5b2f1009bbc3351256c41c1e33bb86d0264a6a1f5cc6d51749e3"],
        6: ["0e6e29b8798ca2ed8e74ffbb2436c79b5ef55a62774f29abb3b129d9e9313af9"],
        7: ["8c90e3e8fd9eba1b4c47bb0e98abbe0e8551dcb0fdf2b3cee59b1d6e307a5fad"],
        8: ["ce85f59a37a8e7987fb43e6437eb4f8d95abdc1bc65c2f09791d79b2d199d334"],
        9: [
            "3abd786b379e2b826ea540d4c0e4a779e4a732be4ba06e178b7b64bc4c0f38b2",  // 7dff869: no requests_accounted
            "c66786f14b5fc3fbb1c79daf19fac9cd1abb73c49a13611795b3c564020a571a",  // a443dec, and c4d62cb
            "3abd786b379e2b826ea540d4c0e4a779e4a732be4ba06e178b7b64bc4c0f38b2",  // b889c86's text (7dff869's), restored
        ],
        10: ["6e206fb4c0aade8706b981cc2c3acfaeae7b00e009d6a28a4b3eb749ae122885"],
        11: ["f371a6172caeff08bf34c39a43001efcaf396a449874296de5010887986a3d5f"],
        12: ["b8a8d1c9e38266d941b551ed7db816d1bc4eeb71ab047fa3933288125423cc69"],
        13: ["67cd7aecb54cc5cf54ff4ec06914efaaf0487ebdc3a930e409c441cc5391ad1d"],
        14: ["ad5394f3a811c37c4ea1943da4aba9ca325eea97b384b2aae2e6b68f63f40f03"],
        15: ["068a18bf13430b74a78e4e2dfebdc2e1c310a1f3f43134e10950cf36019a792a"],
        16: ["018093b55c0a78534f8513f8cc722358c81879f619c7e6efb343ff6040e6165b"],
        17: [
            "b1cf322e2b5fd874d54b513a0268f9eb671650d4fbc892c63224fe11ce16c12d",  // 703a1f7: a comment edited
            "74fb6242f6f4a2d7375388a896562edabb191da72b19572a878a558d21b2685e",  // a443dec, restored at c4d62cb
            "b1cf322e2b5fd874d54b513a0268f9eb671650d4fbc892c63224fe11ce16c12d",  // b889c86's text (703a1f7's), restored
        ],
        18: ["6e3a68f6a127847c813d1e421b8ee5ff173dcbd096ed1b9d98062941261abc89"],
        19: ["a00a507ea2c4d93a4b994fe5d07ff8ae8098083750f38a5dd620f80ef4ce9cce"],
        20: ["adcf9f2b7920325c1c713fb6249b74964ec8422c1d8ce7efaca432f57b8011ee"],
    ]

    /// Versions run 1, 2, … N along the array: the migrator applies the missing ones in this
    /// order (branches that added migrations side by side must leave no gap once merged).
    @Test func versionsRunOneToNInOrder() {
        #expect(Schema.migrations.map(\.version) == Array(1...Schema.migrations.count))
    }

    @Test func everyMigrationIsPinnedAndUnchanged() {
        for migration in Schema.migrations {
            let hash = SHA256.hex(Array(migration.sql.utf8))
            guard let pinned = Self.shipped[migration.version]?.last else {
                Issue.record("""
                    migration \(migration.version) is not pinned: once it is released, add \
                    \(migration.version): ["\(hash)"] to MigrationHistoryTests.shipped
                    """)
                continue
            }
            #expect(
                hash == pinned,
                """
                migration \(migration.version) ("\(migration.name)") changed: its SQL hashes to \(hash), it shipped as \(pinned). \
                A database that applied it keeps the old SQL; restore it and append a migration instead.
                """)
        }
    }

    @Test func sha256MatchesKnownDigests() {
        #expect(SHA256.hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        // Two blocks (the padding spills over).
        #expect(
            SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }
}

/// SHA-256 (FIPS 180-4), enough to pin migration texts; no crypto library is a dependency.
enum SHA256 {
    private static let k: [UInt32] = [
        0x428a_2f98, 0x7137_4491, 0xb5c0_fbcf, 0xe9b5_dba5, 0x3956_c25b, 0x59f1_11f1, 0x923f_82a4, 0xab1c_5ed5,
        0xd807_aa98, 0x1283_5b01, 0x2431_85be, 0x550c_7dc3, 0x72be_5d74, 0x80de_b1fe, 0x9bdc_06a7, 0xc19b_f174,
        0xe49b_69c1, 0xefbe_4786, 0x0fc1_9dc6, 0x240c_a1cc, 0x2de9_2c6f, 0x4a74_84aa, 0x5cb0_a9dc, 0x76f9_88da,
        0x983e_5152, 0xa831_c66d, 0xb003_27c8, 0xbf59_7fc7, 0xc6e0_0bf3, 0xd5a7_9147, 0x06ca_6351, 0x1429_2967,
        0x27b7_0a85, 0x2e1b_2138, 0x4d2c_6dfc, 0x5338_0d13, 0x650a_7354, 0x766a_0abb, 0x81c2_c92e, 0x9272_2c85,
        0xa2bf_e8a1, 0xa81a_664b, 0xc24b_8b70, 0xc76c_51a3, 0xd192_e819, 0xd699_0624, 0xf40e_3585, 0x106a_a070,
        0x19a4_c116, 0x1e37_6c08, 0x2748_774c, 0x34b0_bcb5, 0x391c_0cb3, 0x4ed8_aa4a, 0x5b9c_ca4f, 0x682e_6ff3,
        0x748f_82ee, 0x78a5_636f, 0x84c8_7814, 0x8cc7_0208, 0x90be_fffa, 0xa450_6ceb, 0xbef9_a3f7, 0xc671_78f2,
    ]

    static func hex(_ message: [UInt8]) -> String {
        var h: [UInt32] = [0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19]
        var data = message
        data.append(0x80)
        while data.count % 64 != 56 { data.append(0) }
        let bits = UInt64(message.count) * 8
        for shift in stride(from: 56, through: 0, by: -8) { data.append(UInt8(truncatingIfNeeded: bits >> UInt64(shift))) }
        func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
        var w = [UInt32](repeating: 0, count: 64)
        for block in stride(from: 0, to: data.count, by: 64) {
            for i in 0..<16 {
                w[i] = (0..<4).reduce(0) { $0 << 8 | UInt32(data[block + 4 * i + $1]) }
            }
            for i in 16..<64 {
                let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
                let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
                w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
            }
            var (a, b, c, d, e, f, g, hh) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
            for i in 0..<64 {
                let t1 = hh &+ (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) &+ ((e & f) ^ (~e & g)) &+ k[i] &+ w[i]
                let t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) &+ ((a & b) ^ (a & c) ^ (b & c))
                (hh, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
            }
            for (i, v) in [a, b, c, d, e, f, g, hh].enumerated() { h[i] = h[i] &+ v }
        }
        return h.map { word in
            let s = String(word, radix: 16)
            return String(repeating: "0", count: 8 - s.count) + s
        }.joined()
    }
}

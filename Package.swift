// swift-tools-version:6.1
import PackageDescription

let settings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "loadstar",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "loadstar", targets: ["LoadstarCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // C libraries, found through pkg-config.
        .systemLibrary(
            name: "CCurl",
            path: "Sources/CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"]), .yum(["libcurl-devel"]), .brew(["curl"])]
        ),
        .systemLibrary(
            name: "CLibPQ",
            path: "Sources/CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"]), .yum(["libpq-devel"]), .brew(["libpq"])]
        ),

        // Linux calls Glibc's module does not export (timerfd).
        .systemLibrary(name: "CLoadstarShims", path: "Sources/CLoadstarShims"),

        // The plan model, shard split and schedules: pure Swift, no I/O.
        .target(
            name: "LoadstarPlan",
            dependencies: [.product(name: "Yams", package: "Yams")],
            path: "Sources/LoadstarPlan",
            swiftSettings: settings
        ),
        // Wire protocol: message types and the frame codec. No sockets.
        .target(
            name: "LoadstarProtocol",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            path: "Protocol",
            swiftSettings: settings
        ),
        .target(
            name: "LoadstarAgent",
            dependencies: [
                "CCurl", "CLoadstarShims", "LoadstarProtocol", "LoadstarPlan",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            path: "Agent",
            swiftSettings: settings
        ),
        // PostgreSQL: the libpq connection, migrations, COPY of samples, the ingest spool, the
        // embedded cluster. No coordinator logic.
        .target(
            name: "LoadstarStore",
            dependencies: [
                "CLibPQ", "LoadstarProtocol", "LoadstarPlan",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Sources/LoadstarStore",
            swiftSettings: settings
        ),
        // What a run's results read as: the table, JSON, CSV, HTML with SVG charts, compare and
        // rank inversions, all computed from the store.
        .target(
            name: "LoadstarReports",
            dependencies: ["LoadstarStore", "LoadstarPlan"],
            path: "Sources/LoadstarReports",
            swiftSettings: settings
        ),
        .target(
            name: "LoadstarCoordinator",
            dependencies: [
                "LoadstarStore", "LoadstarReports", "LoadstarProtocol", "LoadstarPlan",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            path: "Coordinator",
            swiftSettings: settings
        ),
        .target(
            name: "LoadstarSimulator",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ],
            path: "Sources/LoadstarSimulator",
            swiftSettings: settings
        ),
        .executableTarget(
            name: "LoadstarCLI",
            dependencies: [
                "LoadstarAgent", "LoadstarCoordinator", "LoadstarStore", "LoadstarReports", "LoadstarSimulator", "LoadstarPlan",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Sources/LoadstarCLI",
            swiftSettings: settings
        ),

        .testTarget(
            name: "LoadstarProtocolTests",
            dependencies: [
                "LoadstarProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
            ],
            path: "Tests/LoadstarProtocolTests"
        ),
        // What several test targets share (test targets cannot import each other).
        .target(
            name: "LoadstarTestSupport",
            dependencies: ["LoadstarPlan"],
            path: "Tests/LoadstarTestSupport"
        ),
        .testTarget(
            name: "LoadstarPlanTests",
            dependencies: ["LoadstarPlan", "LoadstarTestSupport"],
            path: "Tests/LoadstarPlanTests"
        ),
        .testTarget(
            name: "LoadstarAgentTests",
            dependencies: ["LoadstarAgent", "LoadstarPlan"],
            path: "Tests/LoadstarAgentTests"
        ),
        .testTarget(
            name: "LoadstarSimulatorTests",
            dependencies: ["LoadstarSimulator"],
            path: "Tests/LoadstarSimulatorTests"
        ),
        .testTarget(
            name: "LoadstarStoreTests",
            dependencies: ["LoadstarStore", "LoadstarProtocol", "LoadstarPlan", .product(name: "NIOCore", package: "swift-nio")],
            path: "Tests/LoadstarStoreTests"
        ),
        .testTarget(
            name: "LoadstarReportsTests",
            dependencies: ["LoadstarReports"],
            path: "Tests/LoadstarReportsTests"
        ),
        .testTarget(
            name: "LoadstarCoordinatorTests",
            dependencies: ["LoadstarCoordinator"],
            path: "Tests/LoadstarCoordinatorTests"
        ),
        .testTarget(
            name: "LoadstarEndToEndTests",
            dependencies: [
                "LoadstarCoordinator", "LoadstarStore", "LoadstarPlan", "LoadstarProtocol", "LoadstarTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Yams", package: "Yams"),
            ],
            path: "Tests/LoadstarEndToEndTests"
        ),
    ]
)

import NIOCore
import NIOSSL

/// TLS for the links between agents, coordinator and `loadstar run`, from PEM files. On the
/// coordinator, a CA file means mutual TLS: every peer must present a certificate that CA signed.
/// On agents and clients, the CA file is what the coordinator's certificate must chain to, and a
/// certificate and key (when given) are this side's identity.
public struct LinkTLS: Sendable, Equatable {
    public var certificateFile: String?
    public var privateKeyFile: String?
    public var caFile: String?

    public init(certificateFile: String? = nil, privateKeyFile: String? = nil, caFile: String? = nil) {
        self.certificateFile = certificateFile
        self.privateKeyFile = privateKeyFile
        self.caFile = caFile
    }

    /// A configuration problem, naming the file or option to fix.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// The coordinator's side: its certificate and key; with a CA, peers must present certificates it signed.
    public func serverContext() throws(Failure) -> NIOSSLContext {
        guard let certificateFile, let privateKeyFile else {
            throw Failure(description: "TLS on the coordinator needs both --tls-cert and --tls-key")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: try Self.certificates(certificateFile, option: "--tls-cert"),
            privateKey: .privateKey(try Self.key(privateKeyFile)))
        if let caFile {
            configuration.trustRoots = .certificates(try Self.certificateList(caFile, option: "--tls-ca"))
            configuration.certificateVerification = .noHostnameVerification
        }
        return try Self.context(configuration)
    }

    /// An agent's or client's side: verifies the coordinator against the CA (or the system's
    /// roots), and presents its own certificate when it has one.
    public func clientContext() throws(Failure) -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        if let caFile { configuration.trustRoots = .certificates(try Self.certificateList(caFile, option: "--tls-ca")) }
        switch (self.certificateFile, self.privateKeyFile) {
        case (let certificate?, let key?):
            configuration.certificateChain = try Self.certificates(certificate, option: "--tls-cert")
            configuration.privateKey = .privateKey(try Self.key(key))
        case (nil, nil):
            break
        default:
            throw Failure(description: "a client certificate needs both --tls-cert and --tls-key")
        }
        return try Self.context(configuration)
    }

    private static func context(_ configuration: TLSConfiguration) throws(Failure) -> NIOSSLContext {
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw Failure(description: "TLS configuration rejected: \(error)")
        }
    }

    private static func certificateList(_ path: String, option: String) throws(Failure) -> [NIOSSLCertificate] {
        do {
            let certificates = try NIOSSLCertificate.fromPEMFile(path)
            guard !certificates.isEmpty else { throw Failure(description: "\(option) \(path) holds no PEM certificate") }
            return certificates
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(description: "cannot read \(option) \(path) as PEM certificates: \(error)")
        }
    }

    private static func certificates(_ path: String, option: String) throws(Failure) -> [NIOSSLCertificateSource] {
        try self.certificateList(path, option: option).map { .certificate($0) }
    }

    private static func key(_ path: String) throws(Failure) -> NIOSSLPrivateKey {
        do {
            return try NIOSSLPrivateKey(file: path, format: .pem)
        } catch {
            throw Failure(description: "cannot read --tls-key \(path) as a PEM private key: \(error)")
        }
    }
}

extension ChannelPipeline.SynchronousOperations {
    /// Adds the client side of TLS in front of the frame codec. `host` is checked against the
    /// coordinator's certificate (a DNS name, or an IP address for IP SANs).
    public func addLoadstarTLSClient(_ context: NIOSSLContext, host: String) throws {
        let isAddress = host.allSatisfy { $0.isNumber || $0 == "." } || host.contains(":")
        try self.addHandler(try NIOSSLClientHandler(context: context, serverHostname: isAddress ? nil : host))
    }

    /// Adds the server side of TLS in front of the frame codec.
    public func addLoadstarTLSServer(_ context: NIOSSLContext) throws {
        try self.addHandler(NIOSSLServerHandler(context: context))
    }
}

extension NIOSSLCertificate {
    /// The common name of the certificate's subject, or `nil` when it has none. (NIOSSL keeps its
    /// accessor internal; its `description` carries the field.)
    public var subjectCommonName: String? {
        guard let field = self.description.split(separator: ";").first(where: { $0.hasPrefix("common_name=") }) else { return nil }
        var name = field.dropFirst("common_name=".count)
        if name.hasSuffix(">") { name = name.dropLast() }
        return name.isEmpty ? nil : String(name)
    }
}

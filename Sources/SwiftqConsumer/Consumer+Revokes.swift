import SwiftqCore
import SwiftqPlatform

/// Revokes that outlive the process: `worker.state_db` (placeholder until the persistence step lands).
package extension Consumer {
    func saveRevokes() {}
}

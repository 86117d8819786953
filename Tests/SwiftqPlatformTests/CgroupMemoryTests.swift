import SwiftqPlatform
import Testing

/// Where the `oom_kill` counter is found for a given `/proc/self/cgroup`, and how it is read.
@Suite struct CgroupMemoryTests {
    @Test func cgroupV2UsesMemoryEvents() {
        #expect(
            CgroupMemory.candidates(procSelfCgroup: "0::/system.slice/swiftqd.service\n", root: "/cg")
                == ["/cg/system.slice/swiftqd.service/memory.events"]
        )
        #expect(CgroupMemory.candidates(procSelfCgroup: "0::/\n", root: "/cg") == ["/cg/memory.events"])
    }

    /// A v1 or hybrid host: the v1 memory controller's `memory.oom_control` comes first, the v2 file after it.
    @Test func cgroupV1MemoryControllerComesFirst() {
        let text = """
            12:pids:/
            4:memory:/process_api/0012
            3:cpu,cpuacct:/x
            2:blkio,memory:/ignored-second-memory-line
            0::/
            """
        #expect(
            CgroupMemory.candidates(procSelfCgroup: text, root: "/cg") == [
                "/cg/memory/process_api/0012/memory.oom_control",
                "/cg/memory/ignored-second-memory-line/memory.oom_control",
                "/cg/memory.events",
            ]
        )
        #expect(
            CgroupMemory.candidates(procSelfCgroup: "4:memory:/a:b\n", root: "/cg") == [
                "/cg/memory/a:b/memory.oom_control"
            ]
        )
        #expect(CgroupMemory.candidates(procSelfCgroup: "garbage\n\n1:cpu:/\n", root: "/cg").isEmpty)
    }

    @Test func readsTheCounterFromEitherFile() {
        #expect(CgroupMemory.oomKills(in: "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\noom_group_kill 0\n") == 2)
        #expect(CgroupMemory.oomKills(in: "oom_kill_disable 0\nunder_oom 0\noom_kill 17\n") == 17)
        #expect(CgroupMemory.oomKills(in: "oom_kill_disable 0\nunder_oom 0\n") == nil, "a kernel before 4.13")
        #expect(CgroupMemory.oomKills(in: "oom_kill many\n") == nil)
    }

    /// On this machine the process's own cgroup has a readable counter (v1 or v2), as production hosts do.
    @Test func findsThisProcesssCounter() throws {
        let memory = try #require(CgroupMemory.current(), "no readable oom_kill counter for this process")
        #expect(memory.oomKills() != nil)
    }
}

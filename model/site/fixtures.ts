// Test fixtures: a small valid lab site description (raw, as stack config would hold it).
// Tests change one thing at a time and check what the schema or a planner says.

/** Two providers, each node with one uplink to each; `overrides` replace top-level keys. */
export function labSiteInput(nodes: string[], overrides: Record<string, unknown> = {}): any {
    return {
        name: "lab",
        kind: "lab",
        sla: { availability: 0.999999, failoverBudgetMs: 100 },
        providers: [
            { name: "provider-a", prefix: "2001:db8:a::/48" },
            { name: "provider-b", prefix: "2001:db8:b::/48" },
        ],
        // The first node is an edge node: it is the overlay's hub (model/network/site-plan.ts).
        nodes: nodes.map((name, i) => ({ name, role: i === 0 ? "edge" : "app", failureDomain: "east", uplinks: [{ provider: "provider-a" }, { provider: "provider-b" }] })),
        ...overrides,
    };
}

/**
 * A data center of EC2 nodes (nodes[].ec2) in an IPv6-only VPC that holds both providers'
 * blocks: two edges and two ledger nodes across three availability zones. It passes the
 * nublar-sla pack.
 */
export function dcSiteInput(overrides: Record<string, unknown> = {}): any {
    const node = (name: string, role: string, zone: string) => ({
        name, role, failureDomain: `eu-west-1${zone}`, ec2: {}, uplinks: [{ provider: "aws-transit" }, { provider: "equinix" }],
    });
    return {
        name: "dc-test",
        kind: "datacenter",
        sla: { availability: 0.9999, failoverBudgetMs: 300 },
        aws: {
            region: "eu-west-1",
            replicaRegion: "eu-central-1",
            vpc: {
                uplinks: [
                    { provider: "aws-transit", ipamPoolId: "ipam-pool-0123456789abcdef0" },
                    { provider: "equinix", ipamPoolId: "ipam-pool-0fedcba987654321f", route: { virtualGatewayId: "vgw-0123456789abcdef0" } },
                ],
                sshFrom: ["2001:db8:ff00::/40"],
            },
            nixos: { ami: "ami-0123456789abcdef0" },
        },
        providers: [
            { name: "aws-transit", prefix: "2001:db8:3100::/48" },
            { name: "equinix", prefix: "2001:db8:3200::/48" },
        ],
        nodes: [node("edge-1", "edge", "a"), node("edge-2", "edge", "b"), node("ledger-1", "ledger", "c"), node("ledger-2", "ledger", "a")],
        ingress: [{ name: "ledger-api", port: 443, upstreams: ["ledger-1", "ledger-2"] }],
        ledger: { backup: { schedule: "0 0 3 * * *", retentionDays: 30 } },
        ...overrides,
    };
}

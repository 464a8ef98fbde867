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
        // The first node is an edge node: it is the overlay's hub (network/site-plan.ts).
        nodes: nodes.map((name, i) => ({ name, role: i === 0 ? "edge" : "app", failureDomain: "east", uplinks: [{ provider: "provider-a" }, { provider: "provider-b" }] })),
        ...overrides,
    };
}

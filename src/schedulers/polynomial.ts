/**
 * Polynomials as coefficient lists, lowest power first: the Lagrange basis and its exact
 * integrals, for the linear multistep samplers (LMS, DEIS) whose weights integrate an
 * interpolating polynomial through earlier model outputs.
 */

export type Polynomial = readonly number[];

function multiplyByLinear(p: Polynomial, root: number, scale: number): number[] {
  // p(x) * (x - root) * scale
  const out = new Array<number>(p.length + 1).fill(0);
  for (let i = 0; i < p.length; i++) {
    out[i + 1] += p[i] * scale;
    out[i] -= p[i] * root * scale;
  }
  return out;
}

/** The Lagrange basis polynomial that is 1 at nodes[j] and 0 at the other nodes. */
export function lagrangeBasis(nodes: readonly number[], j: number): Polynomial {
  let p: number[] = [1];
  nodes.forEach((node, k) => {
    if (k !== j) p = multiplyByLinear(p, node, 1 / (nodes[j] - node));
  });
  return p;
}

export function evaluate(p: Polynomial, x: number): number {
  let acc = 0;
  for (let i = p.length - 1; i >= 0; i--) acc = acc * x + p[i];
  return acc;
}

function derivative(p: Polynomial): Polynomial {
  return p.slice(1).map((c, i) => c * (i + 1));
}

/** The integral of p over [a, b]. */
export function integrate(p: Polynomial, a: number, b: number): number {
  const antiderivative = [0, ...p.map((c, i) => c / (i + 1))];
  return evaluate(antiderivative, b) - evaluate(antiderivative, a);
}

/**
 * The integral of p(u) e^u over [a, b], from the antiderivative e^u (p - p' + p'' - ...).
 */
export function integrateTimesExp(p: Polynomial, a: number, b: number): number {
  const at = (u: number) => {
    let sum = 0;
    let sign = 1;
    for (let d: Polynomial = p; d.length > 0; d = derivative(d), sign = -sign)
      sum += sign * evaluate(d, u);
    return Math.exp(u) * sum;
  };
  return at(b) - at(a);
}

/**
 * Collects bound parameters while SQL is assembled from a definition: every value a user wrote
 * becomes `{pN:Type}` and travels beside the SQL, never inside it.
 */
export class ParamBinder {
  readonly params: Record<string, unknown> = {}
  private n = 0

  constructor(private readonly prefix = 'p') {}

  bind(type: string, value: unknown): string {
    const name = `${this.prefix}${this.n++}`
    this.params[name] = value
    return `{${name}:${type}}`
  }

  str(v: string): string {
    return this.bind('String', v)
  }
  num(v: number): string {
    return this.bind('Float64', v)
  }
  strs(v: readonly string[]): string {
    return this.bind('Array(String)', v)
  }
  nums(v: readonly number[]): string {
    return this.bind('Array(Float64)', v)
  }
}

export async function main(argv: string[]): Promise<number> {
  process.stdout.write(`todo-sd: commands are not wired yet (${argv.join(" ")})\n`);
  return 0;
}

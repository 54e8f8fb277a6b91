/**
 * An error about an option a caller gave, worded with the option's name (`out: ...`). A front
 * end that spells the options its own way (the command line's flags) rewords it with `wordedAs`,
 * so a library caller reads `out` where the command line reads `--out`.
 */
export class OptionError extends Error {
  /** `words` writes the message, naming each option through the `name` it is given. */
  constructor(private readonly words: (name: (option: string) => string) => string) {
    super(words((option) => option));
  }

  /** The message with each option named by `name` instead. */
  wordedAs(name: (option: string) => string): string {
    return this.words(name);
  }
}

/*
 * The analysis components of Elasticsearch's analysis-common module that the
 * A4C jobs index uses (controlplane/search/domain/mapping.py), for a node
 * built from Maven Central: Elastic publishes the server and transport-netty4
 * there but not analysis-common. Each factory reads the same settings and
 * builds the same Lucene objects as its analysis-common namesake; anything
 * else (an unknown stemmer language, say) is an error rather than a guess.
 *
 *   char_filter  pattern_replace (pattern, replacement, flags)
 *   tokenizer    whitespace (max_token_length), keyword
 *   filter       lowercase (language), length (min, max),
 *                keyword_marker (keywords, keywords_path, keywords_pattern, ignore_case),
 *                stemmer (language / name: english, porter, porter2,
 *                light_english, minimal_english, possessive_english), asciifolding
 *
 * The standard tokenizer and analyzer, stop, the pre-configured lowercase
 * filter and the built-in analyzers
 * (standard, simple, whitespace, keyword, stop) are the server's own.
 */
package a4c.elasticsearch;

import org.apache.lucene.analysis.CharArraySet;
import org.apache.lucene.analysis.LowerCaseFilter;
import org.apache.lucene.analysis.TokenStream;
import org.apache.lucene.analysis.Tokenizer;
import org.apache.lucene.analysis.core.KeywordTokenizer;
import org.apache.lucene.analysis.core.WhitespaceTokenizer;
import org.apache.lucene.analysis.el.GreekLowerCaseFilter;
import org.apache.lucene.analysis.en.EnglishMinimalStemFilter;
import org.apache.lucene.analysis.en.EnglishPossessiveFilter;
import org.apache.lucene.analysis.en.KStemFilter;
import org.apache.lucene.analysis.en.PorterStemFilter;
import org.apache.lucene.analysis.ga.IrishLowerCaseFilter;
import org.apache.lucene.analysis.miscellaneous.ASCIIFoldingFilter;
import org.apache.lucene.analysis.miscellaneous.LengthFilter;
import org.apache.lucene.analysis.miscellaneous.PatternKeywordMarkerFilter;
import org.apache.lucene.analysis.miscellaneous.SetKeywordMarkerFilter;
import org.apache.lucene.analysis.pattern.PatternReplaceCharFilter;
import org.apache.lucene.analysis.snowball.SnowballFilter;
import org.apache.lucene.analysis.standard.StandardAnalyzer;
import org.apache.lucene.analysis.tr.TurkishLowerCaseFilter;
import org.elasticsearch.common.Strings;
import org.elasticsearch.common.regex.Regex;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.index.IndexSettings;
import org.elasticsearch.index.analysis.AbstractCharFilterFactory;
import org.elasticsearch.index.analysis.AbstractTokenFilterFactory;
import org.elasticsearch.index.analysis.AbstractTokenizerFactory;
import org.elasticsearch.index.analysis.Analysis;
import org.elasticsearch.index.analysis.CharFilterFactory;
import org.elasticsearch.index.analysis.NormalizingCharFilterFactory;
import org.elasticsearch.index.analysis.NormalizingTokenFilterFactory;
import org.elasticsearch.index.analysis.PreConfiguredTokenFilter;
import org.elasticsearch.index.analysis.PreConfiguredTokenizer;
import org.elasticsearch.index.analysis.TokenFilterFactory;
import org.elasticsearch.index.analysis.TokenizerFactory;
import org.elasticsearch.indices.analysis.AnalysisModule.AnalysisProvider;
import org.elasticsearch.plugins.AnalysisPlugin;
import org.elasticsearch.plugins.Plugin;
import org.tartarus.snowball.ext.EnglishStemmer;

import java.io.Reader;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.regex.Pattern;

import static org.elasticsearch.plugins.AnalysisPlugin.requiresAnalysisSettings;

public final class A4cAnalysisPlugin extends Plugin implements AnalysisPlugin {

    @Override
    public Map<String, AnalysisProvider<CharFilterFactory>> getCharFilters() {
        Map<String, AnalysisProvider<CharFilterFactory>> filters = new TreeMap<>();
        filters.put("pattern_replace", requiresAnalysisSettings(PatternReplaceCharFilterFactory::new));
        return filters;
    }

    @Override
    public Map<String, AnalysisProvider<TokenizerFactory>> getTokenizers() {
        Map<String, AnalysisProvider<TokenizerFactory>> tokenizers = new TreeMap<>();
        tokenizers.put("whitespace", WhitespaceTokenizerFactory::new);
        tokenizers.put("keyword", KeywordTokenizerFactory::new);
        return tokenizers;
    }

    @Override
    public Map<String, AnalysisProvider<TokenFilterFactory>> getTokenFilters() {
        Map<String, AnalysisProvider<TokenFilterFactory>> filters = new TreeMap<>();
        filters.put("lowercase", LowerCaseTokenFilterFactory::new);
        filters.put("length", LengthTokenFilterFactory::new);
        filters.put("keyword_marker", requiresAnalysisSettings(KeywordMarkerTokenFilterFactory::new));
        filters.put("stemmer", StemmerTokenFilterFactory::new);
        filters.put("asciifolding", AsciiFoldingTokenFilterFactory::new);
        return filters;
    }

    @Override
    public List<PreConfiguredTokenizer> getPreConfiguredTokenizers() {
        return List.of(
            PreConfiguredTokenizer.singleton("whitespace", WhitespaceTokenizer::new),
            PreConfiguredTokenizer.singleton("keyword", KeywordTokenizer::new)
        );
    }

    @Override
    public List<PreConfiguredTokenFilter> getPreConfiguredTokenFilters() {
        return List.of(
            PreConfiguredTokenFilter.singleton("asciifolding", true, ASCIIFoldingFilter::new),
            PreConfiguredTokenFilter.singleton("porter_stem", false, PorterStemFilter::new),
            PreConfiguredTokenFilter.singleton("kstem", false, KStemFilter::new)
        );
    }

    static final class PatternReplaceCharFilterFactory extends AbstractCharFilterFactory implements NormalizingCharFilterFactory {
        private final Pattern pattern;
        private final String replacement;

        PatternReplaceCharFilterFactory(IndexSettings indexSettings, Environment env, String name, Settings settings) {
            super(name);
            String source = settings.get("pattern", null);
            if (Strings.hasLength(source) == false) {
                throw new IllegalArgumentException("pattern is missing for [" + name + "] char filter of type 'pattern_replace'");
            }
            pattern = Regex.compile(source, settings.get("flags"));
            replacement = settings.get("replacement", "");
        }

        @Override
        public Reader create(Reader reader) {
            return new PatternReplaceCharFilter(pattern, replacement, reader);
        }
    }

    static final class WhitespaceTokenizerFactory extends AbstractTokenizerFactory {
        private final int maxTokenLength;

        WhitespaceTokenizerFactory(IndexSettings indexSettings, Environment env, String name, Settings settings) {
            super(indexSettings, settings, name);
            maxTokenLength = settings.getAsInt("max_token_length", StandardAnalyzer.DEFAULT_MAX_TOKEN_LENGTH);
        }

        @Override
        public Tokenizer create() {
            return new WhitespaceTokenizer(TokenStream.DEFAULT_TOKEN_ATTRIBUTE_FACTORY, maxTokenLength);
        }
    }

    static final class KeywordTokenizerFactory extends AbstractTokenizerFactory {
        private final int bufferSize;

        KeywordTokenizerFactory(IndexSettings indexSettings, Environment env, String name, Settings settings) {
            super(indexSettings, settings, name);
            bufferSize = settings.getAsInt("buffer_size", 256);
        }

        @Override
        public Tokenizer create() {
            return new KeywordTokenizer(bufferSize);
        }
    }

    static final class LowerCaseTokenFilterFactory extends AbstractTokenFilterFactory implements NormalizingTokenFilterFactory {
        private final String lang;

        LowerCaseTokenFilterFactory(IndexSettings indexSettings, Environment env, String name, Settings settings) {
            super(name, settings);
            lang = settings.get("language", null);
        }

        @Override
        public TokenStream create(TokenStream stream) {
            if (lang == null) {
                return new LowerCaseFilter(stream);
            }
            return switch (lang.toLowerCase(Locale.ROOT)) {
                case "greek" -> new GreekLowerCaseFilter(stream);
                case "irish" -> new IrishLowerCaseFilter(stream);
                case "turkish" -> new TurkishLowerCaseFilter(stream);
                default -> throw new IllegalArgumentException("language [" + lang + "] not support for lower case");
            };
        }
    }

    static final class LengthTokenFilterFactory extends AbstractTokenFilterFactory {
        private final int min;
        private final int max;

        LengthTokenFilterFactory(IndexSettings indexSettings, Environment env, String name, Settings settings) {
            super(name, settings);
            min = settings.getAsInt("min", 0);
            max = settings.getAsInt("max", Integer.MAX_VALUE);
        }

        @Override
        public TokenStream create(TokenStream stream) {
            return new LengthFilter(stream, min, max);
        }
    }

    static final class KeywordMarkerTokenFilterFactory extends AbstractTokenFilterFactory {
        private final CharArraySet keywordLookup;
        private final Pattern keywordPattern;

        KeywordMarkerTokenFilterFactory(IndexSettings indexSettings, Environment env, String name, Settings settings) {
            super(name, settings);
            boolean ignoreCase = settings.getAsBoolean("ignore_case", false);
            String patternString = settings.get("keywords_pattern");
            if (patternString != null) {
                if (settings.get("keywords") != null || settings.get("keywords_path") != null) {
                    throw new IllegalArgumentException("cannot specify both `keywords_pattern` and `keywords` or `keywords_path`");
                }
                keywordPattern = Pattern.compile(patternString);
                keywordLookup = null;
            } else {
                Set<?> rules = Analysis.getWordSet(env, settings, "keywords");
                if (rules == null) {
                    throw new IllegalArgumentException(
                        "keyword filter requires either `keywords`, `keywords_path`, or `keywords_pattern` to be configured"
                    );
                }
                keywordLookup = new CharArraySet(rules, ignoreCase);
                keywordPattern = null;
            }
        }

        @Override
        public TokenStream create(TokenStream stream) {
            return keywordPattern != null ? new PatternKeywordMarkerFilter(stream, keywordPattern) : new SetKeywordMarkerFilter(stream, keywordLookup);
        }
    }

    static final class StemmerTokenFilterFactory extends AbstractTokenFilterFactory {
        private static final Set<String> LANGUAGES = Set.of(
            "english", "porter", "porter2", "light_english", "lightenglish", "kstem",
            "minimal_english", "minimalenglish", "possessive_english", "possessiveenglish"
        );
        private final String language;

        StemmerTokenFilterFactory(IndexSettings indexSettings, Environment env, String name, Settings settings) {
            super(name, settings);
            language = settings.get("language", settings.get("name", "porter")).toLowerCase(Locale.ROOT);
            if (LANGUAGES.contains(language) == false) { // fails the index creation, as in Elasticsearch
                throw new IllegalArgumentException(
                    "stemmer language [" + language + "] is not available on the A4C test node (tests/harness/jvm/elasticsearch/A4cAnalysisPlugin.java)"
                );
            }
        }

        @Override
        public TokenStream create(TokenStream stream) {
            return switch (language) {
                case "english", "porter" -> new PorterStemFilter(stream);
                case "porter2" -> new SnowballFilter(stream, new EnglishStemmer());
                case "light_english", "lightenglish", "kstem" -> new KStemFilter(stream);
                case "minimal_english", "minimalenglish" -> new EnglishMinimalStemFilter(stream);
                case "possessive_english", "possessiveenglish" -> new EnglishPossessiveFilter(stream);
                default -> throw new IllegalStateException(language);
            };
        }
    }

    static final class AsciiFoldingTokenFilterFactory extends AbstractTokenFilterFactory implements NormalizingTokenFilterFactory {
        private final boolean preserveOriginal;

        AsciiFoldingTokenFilterFactory(IndexSettings indexSettings, Environment env, String name, Settings settings) {
            super(name, settings);
            preserveOriginal = settings.getAsBoolean("preserve_original", false);
        }

        @Override
        public TokenStream create(TokenStream stream) {
            return new ASCIIFoldingFilter(stream, preserveOriginal);
        }
    }
}
